export * from './codec.ts';
export * from './public-view.ts';
export * from './schema.ts';
export * from './shards.ts';
