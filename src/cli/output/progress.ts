import cliProgress from 'cli-progress';
import type { DestinationReport } from '../../apply/engine.js';
import { type Destination, DESTINATION_LABELS } from '../../config/defaults.js';
import type { Source } from '../../sources/source.js';
import type { Output } from './output.js';
import { destinationPieces, fractionOf, readPieces, type DestinationState, type ReadState } from './progress-text.js';
import { RecentRate } from './recent-rate.js';

/** How often rates are sampled and the bars given new values (cli-progress redraws on its own timer). */
const SAMPLE_EVERY_MS = 500;
/** Without a terminal (cron, CI): one plain line this often. */
const LOG_EVERY_MS = 10_000;
/** Bars are drawn in thousandths: the words beside them say the counts. */
const BAR_SCALE = 1000;
const LABEL_WIDTH = 11;
const SIGNALS = ['SIGINT', 'SIGTERM'] as const;

/**
 * `index`: the scan of a file that indexes referrers before planning (runPlan); `read`: the planning pass.
 * Files are read twice, so the bar says which pass it is counting rather than counting both as one.
 */
export type ReadPhase = 'index' | 'read';

/** What runPlan tells the display about its reading. */
export interface ReadListener {
  startPass(phase: ReadPhase): void;
  participantRead(): void;
  /** The planning pass is over (or was stopped): nothing more will be queued, so destination totals are final. */
  readDone(): void;
}

interface Pass {
  label: string;
  participants: number;
  startedAt: number;
  rate: RecentRate;
  tookSeconds?: number;
}

interface Delivery {
  queued: number;
  report?: DestinationReport;
  rate: RecentRate;
}

/**
 * Progress of a run. On a terminal: a read bar (participants counted, with the source's own measure of how far
 * it is: bytes of a file, GrowSurf's participant count) and one bar per destination, each with an ETA from its
 * recent pace. Without one: a plain line every 10 s through `output.info` (a JSON object under --log-format
 * json). With --quiet: nothing.
 */
export class RunProgress implements ReadListener {
  private readonly bars: cliProgress.MultiBar | undefined;
  private readonly readBar: cliProgress.SingleBar | undefined;
  private readonly destinationBars = new Map<Destination, cliProgress.SingleBar>();
  private readonly deliveries = new Map<Destination, Delivery>();
  private pass: Pass;
  private passes = 0;
  private readingDone = false;
  private readonly timer: NodeJS.Timeout | undefined;
  private lastLog: number;
  private stopped = false;
  /** A process that exits while bars are drawn (a second Ctrl-C) gets its cursor back. */
  private readonly onExit = (): void => this.bars?.stop();
  /**
   * A signal's handler writes its notice straight to the terminal: the bars are left as they stand, before it,
   * so the redraws do not overwrite it (a stopping run's last word is its own summary).
   */
  private readonly onSignal = (): void => this.stop();

  constructor(
    private readonly output: Output,
    private readonly source: Pick<Source, 'readProgress'>,
    destinations: readonly Destination[],
    private readonly clock: () => number = () => performance.now(),
  ) {
    this.pass = this.newPass('read');
    this.lastLog = clock();
    for (const d of destinations) this.deliveries.set(d, { queued: 0, rate: new RecentRate(clock) });
    if (output.options.quiet) return;
    if (output.showsProgress) {
      this.bars = new cliProgress.MultiBar(
        {
          format: ' {label} {bar} {text}',
          barsize: 20,
          fps: 5,
          hideCursor: true,
          // Trimmed to the terminal's width rather than wrapping off-screen; log lines above the bars still wrap.
          linewrap: true,
          emptyOnZero: true,
          // Every frame is drawn whole: anything else on the terminal (the ^C a Ctrl-C echoes) is painted over.
          forceRedraw: true,
          clearOnComplete: false,
          stream: output.streams.stderr as NodeJS.WriteStream,
        },
        cliProgress.Presets.shades_classic,
      );
      this.readBar = this.bars.create(BAR_SCALE, 0, { label: this.pass.label.padEnd(LABEL_WIDTH), text: '' });
      for (const d of destinations) this.destinationBars.set(d, this.bars.create(BAR_SCALE, 0, { label: DESTINATION_LABELS[d].padEnd(LABEL_WIDTH), text: '' }));
      const bars = this.bars;
      output.drawing((line) => {
        bars.log(line);
        // Printed now, not at the next redraw: it keeps its place among what follows.
        bars.update();
      });
      process.once('exit', this.onExit);
      for (const signal of SIGNALS) {
        // Only where the process already handles the signal (the CLI does): a listener would otherwise stop it from ending the process.
        if (process.listenerCount(signal) > 0) process.prependListener(signal, this.onSignal);
      }
    }
    this.timer = setInterval(() => this.tick(), SAMPLE_EVERY_MS);
    // Progress never keeps the process alive.
    this.timer.unref();
    this.tick();
  }

  startPass(phase: ReadPhase): void {
    this.finishPass();
    this.passes += 1;
    // An index pass is always followed by the planning pass; a planning pass alone is just "read".
    this.pass = this.newPass(phase === 'index' ? 'index 1/2' : this.passes > 1 ? 'read 2/2' : 'read');
    // Not the source's measure yet: until records() is called it still describes the pass before.
    this.readBar?.update(0, { label: this.pass.label.padEnd(LABEL_WIDTH), text: readPieces({ participants: 0, source: undefined, secondsLeft: undefined }).join('  ') });
  }

  participantRead(): void {
    this.pass.participants += 1;
  }

  readDone(): void {
    this.finishPass();
    this.readingDone = true;
  }

  /** Operations an earlier run left in the queue: this run sends them too. */
  alreadyQueued(destination: Destination, operations: number): void {
    const delivery = this.deliveries.get(destination);
    if (delivery) delivery.queued += operations;
  }

  operationPlanned(destination: Destination): void {
    const delivery = this.deliveries.get(destination);
    if (delivery) delivery.queued += 1;
  }

  /**
   * Once the whole plan is in the queue: each destination's total is what it has done plus what still waits.
   * Counted while planning, a killed run's leftovers planned again would count twice (the queue keeps them once).
   */
  planQueued(waiting: (destination: Destination) => number): void {
    for (const [d, delivery] of this.deliveries) {
      const report = delivery.report;
      delivery.queued = (report ? report.sent + report.failed + report.dead : 0) + waiting(d);
    }
  }

  delivered(destination: Destination, report: DestinationReport): void {
    const delivery = this.deliveries.get(destination);
    if (delivery) delivery.report = report;
  }

  /** Draws the final state and leaves it on screen (the summary follows below it). */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (!this.bars) return;
    this.tick();
    this.output.drawing(undefined);
    process.removeListener('exit', this.onExit);
    for (const signal of SIGNALS) process.removeListener(signal, this.onSignal);
    this.bars.stop();
  }

  private newPass(label: string): Pass {
    return { label, participants: 0, startedAt: this.clock(), rate: new RecentRate(this.clock) };
  }

  private finishPass(): void {
    this.pass.tookSeconds ??= (this.clock() - this.pass.startedAt) / 1000;
  }

  private tick(): void {
    const read = this.readState();
    const destinations = [...this.deliveries].map(([d, delivery]) => [d, this.destinationState(delivery)] as const);
    if (this.bars) {
      this.readBar?.update(Math.round((fractionOf(read.source?.done ?? 0, read.source?.total) ?? 0) * BAR_SCALE), { text: readPieces(read).join('  ') });
      for (const [d, state] of destinations) {
        this.destinationBars.get(d)?.update(Math.round((fractionOf(state.done, Math.max(state.total, state.done)) ?? 0) * BAR_SCALE), { text: destinationPieces(state).join('  ') });
      }
      return;
    }
    const now = this.clock();
    if (now - this.lastLog < LOG_EVERY_MS) return;
    this.lastLog = now;
    const parts = [`${this.pass.label} ${readPieces(read).join(', ')}`, ...destinations.map(([d, state]) => `${DESTINATION_LABELS[d]} ${destinationPieces(state).join(', ')}`)];
    this.output.info(`progress: ${parts.join('; ')}`, {
      progress: {
        pass: this.pass.label,
        participants: read.participants,
        ...(read.source ? { source: read.source } : {}),
        ...(read.secondsLeft !== undefined ? { etaSeconds: Math.round(read.secondsLeft), ...(read.etaLowerBound ? { etaIsLowerBound: true } : {}) } : {}),
        destinations: Object.fromEntries(destinations.map(([d, s]) => [d, { done: s.done, queued: s.total, queuedFinal: s.totalFinal, failed: s.failed, dead: s.dead }])),
      },
    });
  }

  private readState(): ReadState {
    const source = this.source.readProgress?.();
    const pass = this.pass;
    pass.rate.observe(source?.done ?? pass.participants);
    const remaining = source?.total !== undefined && source.total > 0 ? source.total - source.done : undefined;
    return {
      participants: pass.participants,
      source,
      secondsLeft: remaining === undefined ? undefined : pass.rate.secondsLeft(remaining),
      // The index pass of a file is followed by the planning pass: its ETA is only part of the reading.
      ...(pass.label.startsWith('index') ? { etaLowerBound: true } : {}),
      ...(pass.tookSeconds !== undefined ? { tookSeconds: pass.tookSeconds } : {}),
    };
  }

  private destinationState(delivery: Delivery): DestinationState {
    const report = delivery.report;
    const done = report ? report.sent + report.failed + report.dead : 0;
    delivery.rate.observe(done);
    const over = report?.finishedAt !== undefined;
    const ended = report?.stalled ? 'stalled' : report?.interrupted ? 'interrupted' : undefined;
    return {
      done,
      total: delivery.queued,
      totalFinal: this.readingDone,
      failed: report?.failed ?? 0,
      dead: report?.dead ?? 0,
      perSecond: over ? undefined : delivery.rate.perSecond(),
      secondsLeft: this.readingDone ? delivery.rate.secondsLeft(Math.max(0, delivery.queued - done)) : undefined,
      ...(over && report ? { tookSeconds: ((report.finishedAt ?? 0) - report.startedAt) / 1000 } : {}),
      ...(ended ? { ended } : {}),
    };
  }
}
