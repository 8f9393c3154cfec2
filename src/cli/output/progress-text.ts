import type { ReadProgress } from '../../sources/source.js';

/**
 * The words of the progress display, shared by the bars (a terminal) and the line every 10 s (logs), as pieces
 * the caller joins. Most telling first: a bar cut at the terminal's edge loses the detail, not the ETA. A
 * count is never shown against a total of 0 ("0/0"): an unknown total is left out.
 */

export interface ReadState {
  /** Participants the run has counted in this pass. */
  participants: number;
  /** What the source measures of its reading, if it measures anything. */
  source: ReadProgress | undefined;
  secondsLeft: number | undefined;
  /**
   * The ETA covers only this pass and another one follows (a file's index pass, before the planning pass): the
   * reading takes longer than it says, so it is shown as a lower bound ("ETA ≥ 13s").
   */
  etaLowerBound?: boolean;
  /** Seconds the pass took, once it is over. */
  tookSeconds?: number;
}

export interface DestinationState {
  /** Operations with an outcome (sent, failed or dead). */
  done: number;
  /** Operations queued for it so far. */
  total: number;
  /** False while the plan is still being read: more operations may come. */
  totalFinal: boolean;
  failed: number;
  dead: number;
  perSecond: number | undefined;
  secondsLeft: number | undefined;
  /** Seconds it took, once it is over; how it ended when that was early. */
  tookSeconds?: number;
  ended?: 'stalled' | 'interrupted';
}

/** The share done, when there is a total to go by. */
export function fractionOf(done: number, total: number | undefined): number | undefined {
  if (total === undefined || total <= 0) return undefined;
  return Math.min(1, Math.max(0, done / total));
}

export function readPieces(state: ReadState): string[] {
  const { source } = state;
  const fraction = source ? fractionOf(source.done, source.total) : undefined;
  const pieces: string[] = [];
  if (fraction !== undefined) pieces.push(percent(fraction));
  // An API counts participants itself and knows how many there are; a file knows its bytes, not its rows.
  if (source?.unit === 'participants') {
    pieces.push(fraction === undefined ? `${count(source.done)} participants` : `${count(source.done)}/${count(source.total!)} participants`);
  } else {
    pieces.push(`${count(state.participants)} participants`);
  }
  pieces.push(...timing(state.tookSeconds, state.secondsLeft, state.etaLowerBound === true));
  if (source && source.unit !== 'participants' && fraction !== undefined) {
    pieces.push(source.unit === 'bytes' ? bytes(source.done, source.total!) : `${count(source.done)}/${count(source.total!)} ${source.unit}`);
  }
  return pieces;
}

export function destinationPieces(state: DestinationState): string[] {
  const pieces: string[] = [];
  if (state.total === 0 && state.done === 0) {
    pieces.push(state.totalFinal ? 'nothing to send' : 'waiting for the plan');
  } else {
    // Operations an earlier run left in the queue can make `done` pass what this run counted as queued.
    const total = Math.max(state.total, state.done);
    // A share of a total that still grows (the source is still being read) would be a guess: none until it is known.
    if (state.totalFinal) pieces.push(percent(state.done / total));
    pieces.push(`${count(state.done)}/${count(total)}${state.totalFinal ? '' : ' so far'}`);
    if (state.ended) pieces.push(state.ended);
    else if (state.tookSeconds === undefined && !state.totalFinal) pieces.push('total still growing (reading)');
    else pieces.push(...timing(state.tookSeconds, state.secondsLeft));
  }
  if (state.failed > 0) pieces.push(`${count(state.failed)} failed`);
  if (state.dead > 0) pieces.push(`${count(state.dead)} dead`);
  if (state.perSecond !== undefined && state.tookSeconds === undefined && state.done < state.total) pieces.push(`${count(Math.round(state.perSecond))}/s`);
  return pieces;
}

/**
 * "in 12.3s" once over; "ETA 1m 05s" while there is a pace to go by and something left, "ETA ≥ 1m 05s" when more
 * follows that the ETA cannot count yet; nothing else.
 */
function timing(tookSeconds: number | undefined, secondsLeft: number | undefined, lowerBound = false): string[] {
  if (tookSeconds !== undefined) return [`in ${tookSeconds.toFixed(1)}s`];
  return secondsLeft === undefined || secondsLeft <= 0 ? [] : [`ETA ${lowerBound ? '≥ ' : ''}${duration(secondsLeft)}`];
}

export function duration(seconds: number): string {
  const s = Math.ceil(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

function percent(fraction: number): string {
  return `${Math.floor(fraction * 100)}%`;
}

function count(n: number): string {
  return n.toLocaleString('en-US');
}

/** "17.6/42.9 MB": both in the total's unit, so the two read at a glance. */
function bytes(done: number, total: number): string {
  if (total < 1e3) return `${Math.min(done, total)}/${total} B`;
  const [unit, size] = total >= 1e9 ? ['GB', 1e9] : total >= 1e6 ? ['MB', 1e6] : ['KB', 1e3];
  const shown = (n: number): string => (n / size).toFixed(1);
  return `${shown(Math.min(done, total))}/${shown(total)} ${unit}`;
}
