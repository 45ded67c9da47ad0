// One job: what the member directory says about a recipient, as the agent's API error.
import { memberRefusal, type MemberRefusal, type VerifiedDirectory } from '../../certs/index.ts';
import { AgentError, type AgentErrorCode } from '../errors.ts';

const CODES: Record<MemberRefusal, AgentErrorCode> = {
  unknown: 'ERR_MEMBER_UNKNOWN',
  suspended: 'ERR_MEMBER_SUSPENDED',
  revoked: 'ERR_MEMBER_REVOKED',
};

const WHY: Record<MemberRefusal, string> = {
  unknown: 'is not a member of the federation (not in the member directory)',
  suspended: 'is suspended in the federation member directory',
  revoked: 'is revoked in the federation member directory',
};

/** A recipient the member directory refuses: 422 with ERR_MEMBER_UNKNOWN, ERR_MEMBER_SUSPENDED or ERR_MEMBER_REVOKED. */
export class MemberRefusedError extends AgentError {
  constructor(
    readonly member: string,
    readonly refusal: MemberRefusal,
    sequence: number,
  ) {
    super(CODES[refusal], `'${member}' ${WHY[refusal]} (directory sequence ${sequence})`, { detail: { member, directorySequence: sequence } });
  }
}

/**
 * Throws {@link MemberRefusedError} when `directory` does not list `id` as
 * active. Without a directory (none published yet) every id passes: the
 * agent behaves as it did before directories existed.
 */
export function assertMember(directory: VerifiedDirectory | undefined, id: string): void {
  if (!directory) return;
  const refusal = memberRefusal(directory, id);
  if (refusal) throw new MemberRefusedError(id, refusal, directory.directory.sequence);
}
