/**
 * The control message that precedes every weight update, so that a disagreement
 * fails the update on every party instead of deadlocking NCCL (a worker expecting
 * 1 GiB buffers while the trainer sends 4 GiB ones waits forever in ncclBroadcast).
 *
 * 1. The trainer broadcasts a summary of its {@link UpdateAnnouncement}: a digest of
 *    the tensor list (names, dtypes, shapes), its length and the buffer settings.
 * 2. Every party all-gathers one vote: does its own summary match?
 * 3. All agree: done (two store round trips of a few dozen bytes, whatever the list).
 *    Otherwise the trainer broadcasts the full list, every party all-gathers what
 *    differs, and every party throws WeightTransferMismatchError; no data moves.
 *
 * Every wait has the store deadline of the group.
 */
import { createHash } from 'node:crypto';
import type { StatelessProcessGroup } from '../store/index.ts';
import type { DType } from '../tensor/index.ts';
import { WeightTransferMismatchError } from '../errors.ts';

/** What the trainer is about to send. */
export interface UpdateAnnouncement {
  names: string[];
  dtypeNames: DType[];
  shapes: number[][];
  packed: boolean;
  packedBufferSizeBytes: number;
}

const MAX_DIFFS = 3;

/** Lines describing how `mine` (a worker's expectation) differs from the trainer's `sent`; empty when they agree. */
export function describeDisagreement(sent: UpdateAnnouncement, mine: UpdateAnnouncement): string[] {
  const diffs: string[] = [];
  if (sent.packed !== mine.packed)
    diffs.push(
      `packed: the trainer sends ${sent.packed ? 'packed' : 'unpacked'}, this worker expects ${mine.packed ? 'packed' : 'unpacked'}`,
    );
  if (sent.packed && mine.packed && sent.packedBufferSizeBytes !== mine.packedBufferSizeBytes) {
    diffs.push(
      `packedBufferSizeBytes: the trainer packs ${sent.packedBufferSizeBytes} bytes per buffer, this worker expects ` +
        `${mine.packedBufferSizeBytes}`,
    );
  }
  if (sent.names.length !== mine.names.length)
    diffs.push(`the trainer sends ${sent.names.length} tensors, this worker expects ${mine.names.length}`);
  const n = Math.min(sent.names.length, mine.names.length);
  for (let i = 0; i < n && diffs.length < MAX_DIFFS; i++) {
    if (sent.names[i] !== mine.names[i])
      diffs.push(`names[${i}]: the trainer sends '${sent.names[i]}', this worker expects '${mine.names[i]}'`);
    else if (sent.dtypeNames[i] !== mine.dtypeNames[i])
      diffs.push(
        `dtypeNames[${i}] ('${mine.names[i]}'): the trainer sends ${sent.dtypeNames[i]}, this worker expects ${mine.dtypeNames[i]}`,
      );
    else if (sent.shapes[i].join(',') !== mine.shapes[i].join(',')) {
      diffs.push(
        `shapes[${i}] ('${mine.names[i]}'): the trainer sends [${sent.shapes[i].join(', ')}], this worker expects ` +
          `[${mine.shapes[i].join(', ')}]`,
      );
    }
  }
  return diffs.slice(0, MAX_DIFFS);
}

/** Throws on every party when any vote is non-null. */
function settle(votes: (string | null)[], me: number, trainer: number): void {
  const ranks = votes.flatMap((v, r) => (v === null ? [] : [r]));
  if (ranks.length === 0) return;
  const details = ranks.map((r) => `rank ${r}: ${votes[r]}`);
  const head =
    votes[me] !== null && me !== trainer
      ? `weight update rejected: this worker (rank ${me}) disagrees with the trainer (rank ${trainer}); no data was moved`
      : `weight update aborted before any data moved: ${ranks.length === 1 ? 'worker rank' : 'worker ranks'} ` +
        `${ranks.join(', ')} ${ranks.length === 1 ? 'disagrees' : 'disagree'} with the trainer (rank ${trainer})`;
  throw new WeightTransferMismatchError(
    `${head}:\n  ${details.join('\n  ')}\nBoth sides must use the same tensor list and, when packed, the same packedBufferSizeBytes.`,
    ranks,
    details,
  );
}

/**
 * What travels in the first round: a digest of the tensor list, its length and the
 * buffer settings (a few dozen bytes however many tensors). The full list is sent only
 * when somebody disagrees, to say what differs.
 */
interface Summary {
  digest: string;
  count: number;
  packed: boolean;
  packedBufferSizeBytes: number;
}

function summarize(a: UpdateAnnouncement): Summary {
  const hash = createHash('sha256');
  for (let i = 0; i < a.names.length; i++) hash.update(`${a.names[i]}\0${a.dtypeNames[i]}\0${a.shapes[i].join(',')}\n`);
  return {
    digest: hash.digest('hex'),
    count: a.names.length,
    packed: a.packed,
    packedBufferSizeBytes: a.packed ? a.packedBufferSizeBytes : 0,
  };
}

function sameSummary(x: Summary, y: Summary): boolean {
  return (
    x.digest === y.digest &&
    x.count === y.count &&
    x.packed === y.packed &&
    x.packedBufferSizeBytes === y.packedBufferSizeBytes
  );
}

/** Trainer side: announce, collect the votes, throw if anyone disagrees. */
export async function announceUpdate(pg: StatelessProcessGroup, announcement: UpdateAnnouncement): Promise<void> {
  await pg.broadcastObj(summarize(announcement), pg.rank);
  const agree = await pg.allGatherObj<boolean>(true);
  if (agree.every(Boolean)) return;
  await pg.broadcastObj(announcement, pg.rank);
  settle(await pg.allGatherObj<string | null>(null), pg.rank, pg.rank);
}

/** Worker side: receive the announcement from `trainer`, vote, throw if anyone disagrees. */
export async function acceptUpdate(
  pg: StatelessProcessGroup,
  trainer: number,
  expected: UpdateAnnouncement,
): Promise<void> {
  const sent = await pg.broadcastObj<Summary>(null, trainer);
  const agree = await pg.allGatherObj<boolean>(sameSummary(sent, summarize(expected)));
  if (agree.every(Boolean)) return;
  // Somebody disagrees: everyone takes part in the second round, which names what differs.
  const full = await pg.broadcastObj<UpdateAnnouncement>(null, trainer);
  const diffs = describeDisagreement(full, expected);
  settle(await pg.allGatherObj<string | null>(diffs.length > 0 ? diffs.join('; ') : null), pg.rank, trainer);
}
