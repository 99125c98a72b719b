import type { ProviderType } from '../api/provider-connection.ts';

/**
 * Every provider Plugboard knows by name, as data: the examples under examples/providers, `plugboard init`,
 * the simulated upstreams in tests and the docs all come from this one table.
 */
export interface ProviderProfile {
  /** Stable identifier used by `plugboard init <id>` and as the example file name. */
  id: string;
  displayName: string;
  /** Wire dialect of the connection. */
  provider: ProviderType;
  /** Base URL as an admin would paste it. In-cluster servers use a Service DNS name with their default port. */
  url: string;
  kind: 'cloud' | 'aws' | 'gateway' | 'local';
  /** Whether the upstream expects a key; `none` means the example carries no Secret. */
  apiKey: 'required' | 'optional' | 'none';
  /**
   * A keyless credential instead of a key (with apiKey `none`): the spec fields (entraID or googleCloud) and
   * what the admin sets up for them, shown in the example's comment. See docs/credentials.md.
   */
  keyless?: { spec: Record<string, unknown>; hint: string };
  /** Where the admin gets the key, shown in the Secret template. */
  keyHint?: string;
  /**
   * `discovered`: GET /models works; `required`: no usable /models, so an allowlist is the only way to expose
   * models; `recommended`: /models works but lists thousands, so the example narrows it.
   */
  allowlist: 'discovered' | 'required' | 'recommended';
  /** Model IDs for the example allowlist (or to mention when discovery works). */
  models: string[];
  azureApiVersion?: string;
  /** Parameters the provider rejects, dropped by the gateway. */
  dropParams?: string[];
  headers?: Record<string, string>;
  notes: string;
}

const svc = (name: string, ns: string, port: number, path: string) =>
  `http://${name}.${ns}.svc.cluster.local:${port}${path}`;

export const PROVIDER_PROFILES: readonly ProviderProfile[] = [
  {
    id: 'openai',
    displayName: 'OpenAI',
    provider: 'OpenAI',
    url: 'https://api.openai.com/v1',
    kind: 'cloud',
    apiKey: 'required',
    keyHint: 'an API key from platform.openai.com',
    allowlist: 'discovered',
    models: ['gpt-4o', 'gpt-4o-mini'],
    notes: 'Models are discovered from /models.',
  },
  {
    id: 'anthropic',
    displayName: 'Anthropic (Claude)',
    provider: 'Anthropic',
    url: 'https://api.anthropic.com/v1',
    kind: 'cloud',
    apiKey: 'required',
    keyHint: 'an API key from console.anthropic.com',
    allowlist: 'discovered',
    models: ['claude-sonnet-4-5', 'claude-opus-4-1'],
    notes:
      "Uses Anthropic's OpenAI compatibility layer; models are discovered with x-api-key and anthropic-version. " +
      'For PDF processing, citations, extended thinking and prompt caching Anthropic recommends its native API.',
  },
  {
    id: 'gemini',
    displayName: 'Google Gemini',
    provider: 'OpenAI',
    url: 'https://generativelanguage.googleapis.com/v1beta/openai',
    kind: 'cloud',
    apiKey: 'required',
    keyHint: 'an API key from aistudio.google.com',
    allowlist: 'discovered',
    models: ['gemini-2.5-pro', 'gemini-2.5-flash'],
    notes: 'The URL must have no trailing slash; Plugboard removes one if present.',
  },
  {
    id: 'vertex-ai',
    displayName: 'Google Vertex AI',
    provider: 'OpenAI',
    url: 'https://us-central1-aiplatform.googleapis.com/v1/projects/my-project/locations/us-central1/endpoints/openapi',
    kind: 'cloud',
    apiKey: 'none',
    keyless: {
      spec: {
        googleCloud: {
          workloadIdentityFederation: {
            serviceAccountName: 'plugboard-vertex',
            audience:
              '//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/plugboard/providers/my-cluster',
            impersonateServiceAccount: 'vertex-caller@my-project.iam.gserviceaccount.com',
          },
        },
      },
      hint:
        'No key: the operator exchanges a token of ServiceAccount plugboard-vertex (create it in this namespace) ' +
        "at Google's STS through workload identity federation; set up the pool, provider and role binding as " +
        'docs/credentials.md says.',
    },
    allowlist: 'required',
    models: ['google/gemini-2.5-flash', 'google/gemini-2.5-pro'],
    notes:
      "Vertex AI's OpenAI-compatible endpoint: replace my-project and us-central1 in the URL with your project and " +
      'region. Model IDs carry the publisher (google/...); the endpoint cannot list them.',
  },
  {
    id: 'deepseek',
    displayName: 'DeepSeek',
    provider: 'OpenAI',
    url: 'https://api.deepseek.com/v1',
    kind: 'cloud',
    apiKey: 'required',
    keyHint: 'an API key from platform.deepseek.com',
    allowlist: 'discovered',
    models: ['deepseek-chat', 'deepseek-reasoner'],
    notes: 'deepseek-reasoner streams reasoning_content deltas, which the gateway passes through.',
  },
  {
    id: 'mistral',
    displayName: 'Mistral AI',
    provider: 'OpenAI',
    url: 'https://api.mistral.ai/v1',
    kind: 'cloud',
    apiKey: 'required',
    keyHint: 'an API key from console.mistral.ai',
    allowlist: 'discovered',
    models: ['mistral-large-latest', 'codestral-latest', 'mistral-small-latest'],
    notes: 'Models are discovered from /models.',
  },
  {
    id: 'groq',
    displayName: 'Groq',
    provider: 'OpenAI',
    url: 'https://api.groq.com/openai/v1',
    kind: 'cloud',
    apiKey: 'required',
    keyHint: 'an API key from console.groq.com',
    allowlist: 'discovered',
    models: ['llama-3.3-70b-versatile', 'deepseek-r1-distill-llama-70b'],
    notes: 'Models are discovered from /models.',
  },
  {
    id: 'perplexity',
    displayName: 'Perplexity',
    provider: 'OpenAI',
    url: 'https://api.perplexity.ai',
    kind: 'cloud',
    apiKey: 'required',
    keyHint: 'an API key from perplexity.ai/settings (API tab)',
    allowlist: 'required',
    models: ['sonar-pro', 'sonar-reasoning-pro', 'sonar-deep-research'],
    dropParams: ['stop', 'frequency_penalty'],
    notes:
      'Perplexity has no /models endpoint: the allowlist names the exact model IDs (a glob needs a model list). ' +
      'It rejects stop and frequency_penalty.',
  },
  {
    id: 'minimax',
    displayName: 'MiniMax',
    provider: 'OpenAI',
    url: 'https://api.minimax.io/v1',
    kind: 'cloud',
    apiKey: 'required',
    keyHint: 'a Coding Plan API key (not interchangeable with pay-as-you-go keys)',
    allowlist: 'required',
    models: ['MiniMax-M2.5'],
    notes:
      'MiniMax has no /models endpoint: the allowlist names the models. Replies carry <think> reasoning blocks.',
  },
  {
    id: 'openrouter',
    displayName: 'OpenRouter',
    provider: 'OpenAI',
    url: 'https://openrouter.ai/api/v1',
    kind: 'gateway',
    apiKey: 'required',
    keyHint: 'an API key from openrouter.ai/keys',
    allowlist: 'recommended',
    models: ['anthropic/claude-sonnet-4-5', 'google/gemini-2.5-pro'],
    headers: { 'HTTP-Referer': 'https://plugboard.example.com', 'X-Title': 'Plugboard' },
    notes: 'OpenRouter lists thousands of models; the allowlist keeps the model picker usable.',
  },
  {
    id: 'github-models',
    displayName: 'GitHub Models',
    provider: 'OpenAI',
    url: 'https://models.github.ai/inference',
    kind: 'cloud',
    apiKey: 'required',
    keyHint: 'a GitHub token with the models:read permission',
    allowlist: 'required',
    models: ['openai/gpt-4.1', 'openai/gpt-4o-mini'],
    notes: 'GitHub Models lists its catalogue at a non-standard path: the allowlist names the models.',
  },
  {
    id: 'bedrock-access-gateway',
    displayName: 'Amazon Bedrock (Bedrock Access Gateway)',
    provider: 'OpenAI',
    url: svc('bedrock-access-gateway', 'bedrock', 80, '/api/v1'),
    kind: 'aws',
    apiKey: 'required',
    keyHint: "the gateway's key (DEFAULT_API_KEYS; 'bedrock' unless changed)",
    allowlist: 'discovered',
    models: ['anthropic.claude-3-5-sonnet-20241022-v2:0'],
    notes: 'AWS sample proxy in front of Bedrock: /models lists inference profiles; chat and embeddings.',
  },
  {
    id: 'stdapi-ai',
    displayName: 'Amazon Bedrock (stdapi.ai)',
    provider: 'OpenAI',
    url: svc('stdapi', 'stdapi', 8000, '/v1'),
    kind: 'aws',
    apiKey: 'optional',
    keyHint: "stdapi.ai's API_KEY (none by default; set one if it is reachable from elsewhere)",
    allowlist: 'discovered',
    models: ['amazon.nova-micro-v1:0', 'cohere.embed-v4:0', 'amazon.polly-neural', 'amazon.transcribe'],
    notes: 'Chat, embeddings, speech, transcription and images across several AWS regions.',
  },
  {
    id: 'bedrock-mantle',
    displayName: 'Amazon Bedrock (Bedrock Mantle)',
    provider: 'OpenAI',
    url: 'https://bedrock.us-east-1.api.aws/v1',
    kind: 'aws',
    apiKey: 'required',
    keyHint: 'an Amazon Bedrock API key from the AWS console',
    allowlist: 'discovered',
    models: ['openai.gpt-oss-120b-1:0'],
    notes: 'AWS-managed OpenAI-compatible endpoint, chat only; replace us-east-1 with your region.',
  },
  {
    id: 'azure-openai',
    displayName: 'Azure OpenAI',
    provider: 'AzureOpenAI',
    url: 'https://my-resource.openai.azure.com',
    kind: 'cloud',
    apiKey: 'required',
    keyHint: 'an Azure OpenAI resource key',
    allowlist: 'required',
    models: ['my-gpt-4o-deployment'],
    azureApiVersion: '2024-10-21',
    notes:
      'Model IDs are deployment names: list yours in the allowlist. Requests use the api-key header. ' +
      "apiVersion v1 selects Azure's v1 API ({url}/openai/v1/..., the deployment in the body).",
  },
  {
    id: 'litellm',
    displayName: 'LiteLLM proxy',
    provider: 'OpenAI',
    url: svc('litellm', 'litellm', 4000, '/v1'),
    kind: 'gateway',
    apiKey: 'optional',
    keyHint: 'a LiteLLM proxy key, if the proxy has one',
    allowlist: 'discovered',
    models: ['gpt-4'],
    notes: 'Models are discovered from the LiteLLM configuration.',
  },
  {
    id: 'ollama',
    displayName: 'Ollama',
    provider: 'OpenAI',
    url: svc('ollama', 'models', 11434, '/v1'),
    kind: 'local',
    apiKey: 'none',
    allowlist: 'discovered',
    models: ['llama3.2'],
    notes: "Ollama's OpenAI-compatible API; models are discovered from the pulled models.",
  },
  {
    id: 'llama-cpp',
    displayName: 'llama.cpp server',
    provider: 'OpenAI',
    url: svc('llama-cpp', 'models', 10000, '/v1'),
    kind: 'local',
    apiKey: 'none',
    allowlist: 'discovered',
    models: ['model.gguf'],
    notes: 'llama-server serves one GGUF model; no key needed.',
  },
  {
    id: 'lemonade',
    displayName: 'Lemonade',
    provider: 'OpenAI',
    url: svc('lemonade', 'models', 8000, '/api/v1'),
    kind: 'local',
    apiKey: 'none',
    allowlist: 'discovered',
    models: ['Llama-3.2-1B-Instruct-Hybrid'],
    notes: 'ONNX-based local server; note the /api/v1 base path.',
  },
  {
    id: 'lm-studio',
    displayName: 'LM Studio',
    provider: 'OpenAI',
    url: svc('lm-studio', 'models', 1234, '/v1'),
    kind: 'local',
    apiKey: 'none',
    allowlist: 'discovered',
    models: ['qwen2.5-7b-instruct'],
    notes: 'Start the server from the "Local Server" tab first.',
  },
  {
    id: 'vllm',
    displayName: 'vLLM',
    provider: 'OpenAI',
    url: svc('vllm', 'models', 8000, '/v1'),
    kind: 'local',
    apiKey: 'optional',
    keyHint: 'the --api-key vLLM was started with, if any',
    allowlist: 'discovered',
    models: ['meta-llama/Llama-3.1-8B-Instruct'],
    notes: 'High-throughput inference engine; key only if started with --api-key.',
  },
  {
    id: 'localai',
    displayName: 'LocalAI',
    provider: 'OpenAI',
    url: svc('localai', 'models', 8080, '/v1'),
    kind: 'local',
    apiKey: 'none',
    allowlist: 'discovered',
    models: ['gpt-4'],
    notes: 'Drop-in OpenAI replacement; chat, embeddings, audio and images.',
  },
  {
    id: 'docker-model-runner',
    displayName: 'Docker Model Runner',
    provider: 'OpenAI',
    url: svc('docker-model-runner', 'models', 12434, '/engines/llama.cpp/v1'),
    kind: 'local',
    apiKey: 'none',
    allowlist: 'discovered',
    models: ['ai/smollm2'],
    notes: 'Note the /engines/llama.cpp/v1 base path.',
  },
];

export function findProfile(id: string): ProviderProfile | undefined {
  return PROVIDER_PROFILES.find((p) => p.id === id);
}
