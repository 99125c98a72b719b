import { z } from 'zod';
import { objectName } from './common.ts';
import { celString, withRules } from './rules.ts';

/**
 * Keyless credentials of a ProviderConnection: instead of an API key in a Secret, the operator obtains a
 * short-lived OAuth 2.0 access token from an identity provider and the gateway sends it as `Authorization: Bearer`.
 * The defaults below are API defaults (they appear in the CRD); how each identity provider is spoken to lives in
 * src/providers/credentials.ts, and docs/credentials.md says how to set each kind up on the cloud side.
 */

/** Microsoft Entra ID's public-cloud authority (sovereign clouds have their own, e.g. login.microsoftonline.us). */
export const ENTRA_DEFAULT_AUTHORITY_HOST = 'https://login.microsoftonline.com';
/** The resource Azure OpenAI and Azure AI Foundry accept tokens for, in the client-credentials form. */
export const ENTRA_DEFAULT_SCOPE = 'https://cognitiveservices.azure.com/.default';
/** The audience Entra ID expects of a federated (workload identity) assertion in the public cloud. */
export const ENTRA_FEDERATED_AUDIENCE = 'api://AzureADTokenExchange';
/** The scope Vertex AI accepts. */
export const GOOGLE_DEFAULT_SCOPE = 'https://www.googleapis.com/auth/cloud-platform';
/** Google's Security Token Service, which exchanges a federated token for an access token. */
export const GOOGLE_STS_URL = 'https://sts.googleapis.com/v1/token';
/** Google's IAM Service Account Credentials API, for service account impersonation. */
export const GOOGLE_IAM_CREDENTIALS_URL = 'https://iamcredentials.googleapis.com';

const GUID = '[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}';
const DOMAIN = '[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+';
const HTTPS_URL = '^https://[^/?#@\\s]+(/[^?#\\s]*)?$';
const LOOPBACK_HTTP = '^http://(127\\.0\\.0\\.1|localhost|\\[::1\\])(:[0-9]{1,5})?(/[^?#\\s]*)?$';

/**
 * An identity provider's endpoint. HTTPS only: the request carries a client secret or a signed assertion. Plain
 * http is accepted for a loopback address alone (a local test double; in a pod the address policy refuses
 * loopback anyway). Where it connects is checked by the address policy at connect time, like spec.url.
 */
function endpointUrl(field: string, def: string, description: string) {
  const https = new RegExp(HTTPS_URL);
  const loopback = new RegExp(LOOPBACK_HTTP);
  return withRules(
    z
      .string()
      .max(2048)
      .overwrite((s) => s.replace(/\/+$/, '')),
    [
      {
        cel: `self.matches(${celString(HTTPS_URL)}) || self.matches(${celString(LOOPBACK_HTTP)})`,
        message: `${field} must be an https:// URL without credentials, query or fragment (http:// only for a loopback test server), e.g. ${def}`,
        check: (s) => (https.test(s) || loopback.test(s)) && URL.canParse(s),
      },
    ],
    `${description} Default ${def}.`,
  ).default(def);
}

/** A key of a Secret in the connection's namespace, with `what` it holds and the key used when none is given. */
export function secretKeyRef(defaultKey: string, what: string, description: string) {
  return z
    .object({
      name: objectName.meta({ description: 'Name of a Secret in the same namespace as the connection.' }),
      key: z
        .string()
        .min(1)
        .max(253)
        .regex(/^[-._a-zA-Z0-9]+$/, 'must be a valid Secret data key (letters, digits, "-", "_" and ".")')
        .default(defaultKey)
        .meta({ description: `Key within the Secret that holds ${what}. Default ${defaultKey}.` }),
    })
    .meta({ description });
}

const serviceAccountName = objectName.meta({
  description:
    "A Kubernetes ServiceAccount in the connection's namespace. The operator requests a short-lived token for it " +
    '(TokenRequest API) and presents it to the identity provider, so the federated credential names ' +
    'system:serviceaccount:<namespace>:<serviceAccountName>.',
});

export const EntraID = withRules(
  z.object({
    tenantID: z
      .string()
      .max(253)
      .regex(
        new RegExp(`^(${GUID}|${DOMAIN})$`),
        'must be a directory (tenant) ID such as 72f988bf-86f1-41af-91ab-2d7cd011db47, or a domain such as contoso.onmicrosoft.com',
      )
      .meta({ description: 'Directory (tenant) ID of the Entra ID tenant that holds the app registration.' }),
    clientID: z
      .string()
      .regex(
        new RegExp(`^${GUID}$`),
        'must be an application (client) ID such as 00001111-aaaa-2222-bbbb-3333cccc4444',
      )
      .meta({
        description:
          'Application (client) ID of the app registration or user-assigned managed identity the token is for.',
      }),
    authorityHost: endpointUrl(
      'authorityHost',
      ENTRA_DEFAULT_AUTHORITY_HOST,
      'Entra ID authority; tokens come from {authorityHost}/{tenantID}/oauth2/v2.0/token. Sovereign clouds have ' +
        'their own (https://login.microsoftonline.us, https://login.chinacloudapi.cn), as AZURE_AUTHORITY_HOST says.',
    ),
    scope: withRules(
      z.string().min(1).max(512),
      [
        {
          cel: "self.endsWith('/.default') && !self.contains(' ')",
          message:
            'scope must be one resource followed by /.default (the client-credentials flow asks for the static permissions of the app), e.g. https://cognitiveservices.azure.com/.default',
          check: (s) => s.endsWith('/.default') && !s.includes(' '),
        },
      ],
      `The resource the token is for. Default ${ENTRA_DEFAULT_SCOPE} (Azure OpenAI, Azure AI Foundry).`,
    ).default(ENTRA_DEFAULT_SCOPE),
    workloadIdentity: z
      .object({
        serviceAccountName,
        audience: z
          .string()
          .regex(
            /^api:\/\/AzureADTokenExchange[A-Za-z]*$/,
            'must be api://AzureADTokenExchange, or its sovereign-cloud form (api://AzureADTokenExchangeUSGov, api://AzureADTokenExchangeChina)',
          )
          .default(ENTRA_FEDERATED_AUDIENCE)
          .meta({
            description: `Audience of the service account token, as the federated credential names it. Default ${ENTRA_FEDERATED_AUDIENCE}.`,
          }),
      })
      .optional()
      .meta({
        description:
          'Azure workload identity: the service account token is the client assertion of the OAuth 2.0 ' +
          'client-credentials flow (what AZURE_FEDERATED_TOKEN_FILE holds in a pod). No secret is stored.',
      }),
    clientSecretRef: secretKeyRef(
      'clientSecret',
      "the app's client secret",
      "Secret holding a client secret of the app registration (the secret's value, not its ID).",
    ).optional(),
  }),
  [
    {
      cel: 'has(self.workloadIdentity) != has(self.clientSecretRef)',
      message:
        "entraID needs exactly one of workloadIdentity (a Kubernetes service account federated with the app) or clientSecretRef (a Secret holding the app's client secret), together with tenantID and clientID",
      check: (e) => (e.workloadIdentity !== undefined) !== (e.clientSecretRef !== undefined),
    },
  ],
  'Microsoft Entra ID access tokens (Azure OpenAI, Azure AI Foundry), obtained by the operator and sent as ' +
    'Authorization: Bearer. See docs/credentials.md.',
);
export type EntraID = z.output<typeof EntraID>;

const GOOGLE_PROVIDER =
  /^\/\/iam\.googleapis\.com\/projects\/[0-9]+\/locations\/global\/workloadIdentityPools\/[a-z0-9-]{4,32}\/providers\/[a-z0-9-]{4,32}$/;

export const GoogleCloud = withRules(
  z.object({
    scope: z
      .string()
      .min(1)
      .max(512)
      .regex(/^\S+$/, 'scope must be one OAuth scope, e.g. https://www.googleapis.com/auth/cloud-platform')
      .default(GOOGLE_DEFAULT_SCOPE)
      .meta({ description: `OAuth scope of the access token. Default ${GOOGLE_DEFAULT_SCOPE}.` }),
    workloadIdentityFederation: z
      .object({
        serviceAccountName,
        audience: z
          .string()
          .max(512)
          .regex(
            GOOGLE_PROVIDER,
            'must be the workload identity pool provider, //iam.googleapis.com/projects/<project number>/locations/global/workloadIdentityPools/<pool>/providers/<provider>',
          )
          .meta({
            description:
              'The workload identity pool provider (the "audience" of the credential configuration gcloud ' +
              'creates). The service account token is requested for https:<audience>, the allowed audience ' +
              'a provider has by default.',
          }),
        impersonateServiceAccount: z
          .string()
          .max(254)
          .regex(
            /^[A-Za-z0-9._-]+@[a-z0-9.-]+\.gserviceaccount\.com$/,
            'must be a Google service account e-mail such as vertex@my-project.iam.gserviceaccount.com',
          )
          .optional()
          .meta({
            description:
              'A Google service account to impersonate with the federated token (it needs ' +
              'roles/iam.workloadIdentityUser for the pool principal); omit to use the federated principal itself.',
          }),
        tokenURL: endpointUrl(
          'tokenURL',
          GOOGLE_STS_URL,
          "Google's Security Token Service, or its Private Service Connect address.",
        ),
        iamCredentialsURL: endpointUrl(
          'iamCredentialsURL',
          GOOGLE_IAM_CREDENTIALS_URL,
          "Google's IAM Service Account Credentials API, used only for impersonation.",
        ),
      })
      .optional()
      .meta({
        description:
          "Workload identity federation: the service account token is exchanged at Google's Security Token " +
          'Service for an access token. No secret is stored.',
      }),
    serviceAccountKeySecretRef: secretKeyRef(
      'credentials.json',
      'the JSON key',
      'Secret holding a Google service account key (the JSON file the console downloads); the operator signs a ' +
        'JWT assertion with it. Prefer workloadIdentityFederation, which stores no key.',
    ).optional(),
  }),
  [
    {
      cel: 'has(self.workloadIdentityFederation) != has(self.serviceAccountKeySecretRef)',
      message:
        'googleCloud needs exactly one of workloadIdentityFederation (serviceAccountName and audience) or serviceAccountKeySecretRef (a Secret holding a service account key JSON)',
      check: (g) =>
        (g.workloadIdentityFederation !== undefined) !== (g.serviceAccountKeySecretRef !== undefined),
    },
  ],
  "Google Cloud access tokens (Vertex AI's OpenAI-compatible endpoint), obtained by the operator and sent as " +
    'Authorization: Bearer. See docs/credentials.md.',
);
export type GoogleCloud = z.output<typeof GoogleCloud>;

/**
 * Reasons of the CredentialReady condition (entraID and googleCloud connections only). The reasons for an
 * identity provider's refusal are its OAuth 2.0 error codes (RFC 6749 section 5.2, RFC 8693) in CamelCase; the
 * message quotes what it said (Entra ID's AADSTS code and text, Google's error_description). docs/credentials.md
 * has a troubleshooting table.
 */
export const CredentialReasons = [
  /** True: an access token is held; the message says until when. */
  'TokenIssued',
  /** True: the token is still valid but refreshing it fails; retried with backoff until it expires. */
  'TokenRefreshFailing',
  /** False: the ServiceAccount named by serviceAccountName does not exist in the connection's namespace. */
  'ServiceAccountNotFound',
  /** False: the API server refused the TokenRequest (the operator lacks create on serviceaccounts/token there). */
  'TokenRequestForbidden',
  /** False: no TokenRequest API here (standalone mode and plugboard verify run outside a cluster). */
  'WorkloadIdentityUnavailable',
  /** False: the Secret does not hold a usable service account key JSON. */
  'InvalidServiceAccountKey',
  /** False: invalid_request, e.g. Entra ID's AADSTS90002 (tenant not found). */
  'InvalidRequest',
  /** False: invalid_client: a wrong client secret, or no federated credential matches the assertion. */
  'InvalidClient',
  /** False: invalid_grant: the assertion was refused (Google: audience, issuer, signature, expiry). */
  'InvalidGrant',
  /** False: unauthorized_client, e.g. Entra ID's AADSTS700016 (no such application in the tenant). */
  'UnauthorizedClient',
  /** False: unsupported_grant_type. */
  'UnsupportedGrantType',
  /** False: invalid_scope. */
  'InvalidScope',
  /** False: invalid_target (Google STS: the pool or provider does not exist or is disabled). */
  'InvalidTarget',
  /** False: invalid_resource (Entra ID's AADSTS500011: the scope's resource is not in the tenant). */
  'InvalidResource',
  /** False: the identity provider refused for another reason (its error code and text are in the message). */
  'TokenRequestRejected',
  /** False: Google IAM refused the impersonation (HTTP 403, roles/iam.workloadIdentityUser missing). */
  'PermissionDenied',
  /** False: no usable answer: a network failure, a timeout, HTTP 429 or 5xx. Retried with backoff. */
  'IdentityProviderUnavailable',
  /** False: the identity provider answered 2xx without an access token and a lifetime. */
  'InvalidTokenResponse',
] as const;
export type CredentialReason = (typeof CredentialReasons)[number];

/** Which credential a connection names; `none` for a server that needs no key. */
export type CredentialKind =
  | 'none'
  | 'apiKey'
  | 'entraWorkloadIdentity'
  | 'entraClientSecret'
  | 'googleWorkloadIdentity'
  | 'googleServiceAccountKey';

interface CredentialFields {
  apiKeySecretRef?: { name: string; key: string };
  entraID?: EntraID;
  googleCloud?: GoogleCloud;
}

export function credentialKind(spec: CredentialFields): CredentialKind {
  if (spec.entraID) return spec.entraID.workloadIdentity ? 'entraWorkloadIdentity' : 'entraClientSecret';
  if (spec.googleCloud) {
    return spec.googleCloud.workloadIdentityFederation ? 'googleWorkloadIdentity' : 'googleServiceAccountKey';
  }
  return spec.apiKeySecretRef ? 'apiKey' : 'none';
}

/** Whether the connection's credential is an access token the operator obtains (rather than a stored key). */
export function usesAccessToken(spec: CredentialFields): boolean {
  return spec.entraID !== undefined || spec.googleCloud !== undefined;
}

/** The Secret key the connection's credential reads, with the field that names it and what it holds. */
export function credentialSecretRef(
  spec: CredentialFields,
): { name: string; key: string; field: string; holds: string } | undefined {
  if (spec.apiKeySecretRef)
    return { ...spec.apiKeySecretRef, field: 'apiKeySecretRef', holds: 'the API key' };
  if (spec.entraID?.clientSecretRef) {
    return {
      ...spec.entraID.clientSecretRef,
      field: 'entraID.clientSecretRef',
      holds: "the app's client secret",
    };
  }
  if (spec.googleCloud?.serviceAccountKeySecretRef) {
    return {
      ...spec.googleCloud.serviceAccountKeySecretRef,
      field: 'googleCloud.serviceAccountKeySecretRef',
      holds: 'the service account key JSON',
    };
  }
  return undefined;
}
