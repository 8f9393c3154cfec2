import cliProgress from 'cli-progress';
import type { DestinationReport } from '../apply/engine.js';
import { type Destination, DESTINATION_LABELS } from '../config/defaults.js';
import type { Output } from './output.js';

const LOG_EVERY_MS = 10_000;

/**
 * Progress of a run: bars on a terminal (read, then sent per destination with rate and ETA), a plain line
 * every 10 s otherwise (cron logs), nothing with --quiet.
 */
export class RunProgress {
  private readonly bars?: cliProgress.MultiBar;
  private readonly destinationBars = new Map<Destination, cliProgress.SingleBar>();
  private readBar?: cliProgress.SingleBar;
  private lastLog = 0;
  private read = 0;
  private readonly planned = new Map<Destination, number>();
  private readonly reports = new Map<Destination, DestinationReport>();

  constructor(
    private readonly output: Output,
    destinations: readonly Destination[],
  ) {
    if (output.showsProgress) {
      this.bars = new cliProgress.MultiBar(
        { format: ' {label} |{bar}| {value}/{total} {extra}  ETA {eta_formatted}', hideCursor: true, clearOnComplete: false, stream: output.streams.stderr as NodeJS.WriteStream, etaBuffer: 50 },
        cliProgress.Presets.shades_classic,
      );
      this.readBar = this.bars.create(0, 0, { label: 'read        ', extra: 'participants' });
      for (const d of destinations) this.destinationBars.set(d, this.bars.create(0, 0, { label: DESTINATION_LABELS[d].padEnd(12), extra: '' }));
    }
    for (const d of destinations) this.planned.set(d, 0);
  }

  participantRead(): void {
    this.read += 1;
    if (this.readBar && this.read % 100 === 0) {
      this.readBar.setTotal(this.read);
      this.readBar.update(this.read);
    }
    this.maybeLog();
  }

  operationPlanned(destination: Destination): void {
    this.planned.set(destination, (this.planned.get(destination) ?? 0) + 1);
    this.destinationBars.get(destination)?.setTotal(this.planned.get(destination) ?? 0);
  }

  delivered(destination: Destination, report: DestinationReport): void {
    this.reports.set(destination, report);
    const bar = this.destinationBars.get(destination);
    if (bar) {
      const done = report.sent + report.failed + report.dead;
      const seconds = Math.max(0.001, (performance.now() - report.startedAt) / 1000);
      bar.update(done, { extra: `${Math.round(report.sent / seconds)}/s failed ${report.failed} dead ${report.dead}` });
    }
    this.maybeLog();
  }

  stop(): void {
    this.bars?.stop();
  }

  private maybeLog(): void {
    if (this.bars) return;
    const now = performance.now();
    if (now - this.lastLog < LOG_EVERY_MS) return;
    if (this.lastLog === 0) {
      this.lastLog = now;
      return;
    }
    this.lastLog = now;
    const parts = [...this.planned].map(([d, planned]) => {
      const r = this.reports.get(d);
      return `${DESTINATION_LABELS[d]} ${r?.sent ?? 0}/${planned} sent, ${r?.failed ?? 0} failed, ${r?.dead ?? 0} dead`;
    });
    this.output.info(`progress: ${this.read} participants read; ${parts.join('; ')}`, { read: this.read });
  }
}
