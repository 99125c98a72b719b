/**
 * Condition types and reasons of the control loop itself, the same for every kind. `Ready` and `Stalled` are
 * the types kstatus (kubectl wait, Flux, Argo CD) reads: Stalled True means the operator has stopped acting on
 * the object's current generation and only a change to the object makes it try again.
 */
export const CONDITION_READY = 'Ready';
export const CONDITION_STALLED = 'Stalled';

/**
 * The API server admitted the spec but Plugboard's own validation refuses it: the installed CRD is older than
 * the operator, or a rule the CRD schema does not carry. Ready is False and Stalled True with this reason and
 * the validation errors as the message; the operator does nothing more until `metadata.generation` changes.
 */
export const REASON_INVALID_SPEC = 'InvalidSpec';
