import {
  CONDITION_CREDENTIAL_READY,
  CONDITION_MODELS_DISCOVERED,
  REASON_INVALID_SPEC,
} from '../../api/conditions.ts';
import { credentialKind } from '../../api/credentials.ts';
import { ProviderConnectionSpec, type ProviderConnectionStatus } from '../../api/provider-connection.ts';
import { describeIssues } from '../../api/validate.ts';
import type { Snapshot } from '../../snapshot/schema.ts';
import type { Minter } from '../credentials/mint.ts';
import type { VerificationMemory } from '../logic/connection-status.ts';
import { planInvalidSpec } from '../logic/invalid-spec.ts';
import type { ConnectionView } from '../logic/readiness.ts';
import { refreshTokenIfDue, type Verifier, verifyIfDueAndPlan } from '../logic/reconcile.ts';
import { adoptToken, type TokenMemory } from '../logic/tokens.ts';
import type {
  AllowlistObject,
  ConnectionObject,
  ObjectSource,
  SecretSource,
  SnapshotEntries,
} from '../ports.ts';
import { type Condition, findCondition, transitioned } from '../runtime/conditions.ts';
import type { ReconcileContext, ReconcileResult } from '../runtime/controller.ts';
import { Stalling } from '../runtime/errors.ts';
import { commitStatus, type StatusExit } from './status.ts';

export interface ConnectionControllerOptions extends StatusExit {
  objects: ObjectSource;
  secrets: SecretSource;
  snapshot: SnapshotEntries;
  verify: Verifier;
  /** Obtains access tokens (entraID, googleCloud). */
  mint: Minter;
  /** The allowlists whose connectionRef names this connection (an index, not a scan). */
  allowlistsOf(key: string): AllowlistObject[];
  /** Called after every reconcile of `key`: its allowlists' status follows from what it decided. */
  reconciled(key: string): void;
}

/**
 * ProviderConnection: verify when due, plan status and snapshot entry, write both. The verification memory
 * (last outcome, last good model list, when the next check is due) and what the connection decided for its
 * allowlists (its view, read by the allowlist controller) live here, per connection.
 */
export class ConnectionController {
  private readonly o: ConnectionControllerOptions;
  private readonly memory = new Map<string, VerificationMemory>();
  /** Access tokens: held here and in the snapshot, nowhere else; adopted from the snapshot after a restart. */
  private readonly tokens = new Map<string, TokenMemory>();
  private readonly views = new Map<string, ConnectionView>();

  constructor(o: ConnectionControllerOptions) {
    this.o = o;
  }

  /** What the connection's last reconcile decided for its allowlists; undefined before it has run. */
  view(key: string): ConnectionView | undefined {
    return this.views.get(key);
  }

  /**
   * Remembers the model lists of a snapshot written before a restart as the last good ones, so a connection whose
   * upstream fails at start-up keeps serving them (and says so) instead of emptying the gateway; and adopts its
   * still-valid access tokens, so an identity provider that is down at start-up does not either.
   */
  seed(previous: Snapshot): void {
    const now = Date.now();
    for (const c of previous.connections) {
      const token = adoptToken(c, now);
      if (token) this.tokens.set(`${c.namespace}/${c.name}`, token);
      const at = c.status.lastVerifiedTime ? Date.parse(c.status.lastVerifiedTime) : Date.now();
      this.memory.set(`${c.namespace}/${c.name}`, {
        fingerprint: '',
        outcome: {
          ok: false,
          reason: 'UpstreamError',
          message: 'not verified since the operator started',
          durationMs: 0,
        },
        checkedAt: 0,
        nextDueAt: 0,
        consecutiveFailures: 0,
        lastGood: {
          models: c.models.map((m) => {
            // The exposed ID without the connection's prefix; the listed ID when the upstream spells it otherwise.
            const id = c.modelPrefix ? m.id.slice(c.modelPrefix.length + 1) : m.id;
            return {
              id,
              ...(id !== m.upstreamId ? { upstreamId: m.upstreamId } : {}),
              created: m.created,
              ownedBy: m.ownedBy,
            };
          }),
          at,
        },
      });
    }
  }

  async reconcile(key: string, ctx: ReconcileContext): Promise<ReconcileResult | undefined> {
    const { o } = this;
    const [namespace, name] = key.split('/') as [string, string];
    const obj = o.objects.connection(key);
    if (!obj || obj.metadata.deletionTimestamp) {
      this.memory.delete(key);
      this.tokens.delete(key);
      this.views.delete(key);
      o.snapshot.delete(key);
      o.metrics.forgetConnection(namespace, name);
      o.reconciled(key);
      return undefined;
    }
    const parsed = ProviderConnectionSpec.safeParse(obj.spec);
    if (!parsed.success) return this.stall(key, obj, describeIssues(parsed.error));
    const spec = parsed.data;
    const secret = await o.secrets.secret(namespace, spec, ctx.signal);
    const tokenStep = await refreshTokenIfDue(
      { namespace, spec, secret, token: this.tokens.get(key) },
      o.mint,
      ctx.signal,
    );
    if (tokenStep.token) this.tokens.set(key, tokenStep.token);
    else this.tokens.delete(key);
    const m = tokenStep.minted;
    if (m) {
      const kind = credentialKind(spec);
      o.metrics.tokenRequests.inc({ kind, reason: m.ok ? 'TokenIssued' : m.reason });
      ctx.log.debug({ kind, ok: m.ok, ms: Math.round(m.durationMs) }, 'access token requested');
    }
    const step = await verifyIfDueAndPlan(
      {
        namespace,
        name,
        generation: obj.metadata.generation ?? 0,
        spec,
        secret,
        token: tokenStep.token,
        allowlists: o.allowlistsOf(key).map((a) => ({
          name: a.metadata.name,
          generation: a.metadata.generation,
          models: a.spec.models,
        })),
        memory: this.memory.get(key),
        previousStatus: obj.status,
      },
      o.verify,
      ctx.signal,
    );
    if (step.verified) {
      o.metrics.verificationDuration.observe({ provider: spec.provider }, step.verified.durationMs / 1000);
      o.metrics.verificationResults.inc({ reason: step.verified.reason });
      ctx.log.debug({ reason: step.verified.reason, ms: Math.round(step.verified.durationMs) }, 'verified');
    }
    if (step.memory) this.memory.set(key, step.memory);
    const { plan } = step;
    // Routing first: the snapshot entry is queued before Ready shows in status, and a failed status write does not
    // hold back routing.
    o.snapshot.set(key, plan.snapshot);
    this.views.set(key, plan.view);
    const wrote = await commitStatus(o, 'ProviderConnection', obj, plan.status, {
      condition: plan.ready,
      eventType: plan.ready.status === 'True' ? 'Normal' : 'Warning',
    });
    await this.credentialEvent(obj, plan.status.conditions as Condition[] | undefined);
    if (plan.manyModels) {
      const advice = findCondition(plan.status.conditions, CONDITION_MODELS_DISCOVERED);
      await o.events.record({
        kind: 'ProviderConnection',
        namespace,
        name,
        ...(obj.metadata.uid ? { uid: obj.metadata.uid } : {}),
        type: 'Warning',
        condition: CONDITION_MODELS_DISCOVERED,
        reason: 'TooManyModels',
        message: advice?.message ?? '',
      });
    }
    o.metrics.connectionUp.set({ namespace, name }, plan.ready.status === 'True' ? 1 : 0);
    o.metrics.modelsExposed.set({ namespace, name }, plan.status.exposedModelCount ?? 0);
    if (plan.status.discoveredModelCount !== undefined) {
      o.metrics.modelsDiscovered.set({ namespace, name }, plan.status.discoveredModelCount);
    }
    const last = this.memory.get(key)?.lastGood?.at;
    if (last) o.metrics.lastVerified.set({ namespace, name }, last / 1000);
    const expires = tokenStep.token?.token?.expiresAt;
    if (expires) o.metrics.credentialExpiry.set({ namespace, name }, expires / 1000);
    else o.metrics.credentialExpiry.remove({ namespace, name });
    ctx.log.debug({ ready: plan.ready.reason, wrote }, 'reconciled');
    o.reconciled(key);
    return plan.requeueAfterMs !== undefined ? { requeueAfterMs: plan.requeueAfterMs } : undefined;
  }

  /**
   * An Event for what Ready does not report: a token refresh that fails while the token still serves (Warning),
   * and its recovery (Normal). A token that cannot be had at all makes Ready False, which has its own Event.
   */
  private async credentialEvent(obj: ConnectionObject, after: Condition[] | undefined): Promise<void> {
    const now = findCondition(after, CONDITION_CREDENTIAL_READY);
    const before = findCondition(
      obj.status?.conditions as Condition[] | undefined,
      CONDITION_CREDENTIAL_READY,
    );
    if (now?.status !== 'True' || !before || !transitioned(before, now)) return;
    if (now.reason !== 'TokenRefreshFailing' && before.reason !== 'TokenRefreshFailing') return;
    const { namespace = '', name, uid } = obj.metadata;
    await this.o.events.record({
      kind: 'ProviderConnection',
      namespace,
      name,
      ...(uid ? { uid } : {}),
      type: now.reason === 'TokenIssued' ? 'Normal' : 'Warning',
      condition: CONDITION_CREDENTIAL_READY,
      reason: now.reason,
      message: now.message,
    });
  }

  /**
   * A spec the API server admitted but validation refuses: Ready False and Stalled True with the errors, an
   * Event on the transition, and no retry (the object's next generation enqueues it). The snapshot keeps the last
   * valid spec, if there was one, so bad input takes nothing out of service.
   */
  private async stall(key: string, obj: ConnectionObject, issues: string[]): Promise<never> {
    const { namespace = '', name } = obj.metadata;
    const plan = planInvalidSpec<ProviderConnectionStatus>({
      generation: obj.metadata.generation ?? 0,
      issues,
      serving: this.o.snapshot.has(key),
      previousStatus: obj.status,
      now: new Date(),
    });
    await commitStatus(this.o, 'ProviderConnection', obj, plan.status, {
      condition: plan.ready,
      eventType: 'Warning',
    });
    this.o.metrics.connectionUp.set({ namespace, name }, 0);
    throw new Stalling(REASON_INVALID_SPEC, `spec fails validation: ${issues.slice(0, 3).join('; ')}`);
  }
}
