export * from './common.ts';
export * from './conditions.ts';
export * from './credentials.ts';
export * from './model-allowlist.ts';
export * from './provider-connection.ts';
export * from './validate.ts';
export * from './verification.ts';
