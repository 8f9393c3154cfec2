// The naive delivery baseline, the pattern of GrowSurf's and Cello's integration guides: for each operation,
// `await identify` / `await track`, one after the other, through the same SDKs (Segment one message per
// request; Customer.io v1 one call per request). Reads the operations from a `diff --out` plan file and sends
// the first LIMIT participants' worth, so the run stays short; the caller extrapolates.
import { readFileSync } from 'node:fs';
import { Analytics } from '@segment/analytics-node';
import { TrackClient } from 'customerio-node';

interface PlanLine {
  destination: 'segment' | 'customerio';
  kind: 'identify' | 'track';
  userId: string;
  participantId: string;
  payload: Record<string, unknown>;
}

const [planFile, limitText] = process.argv.slice(2);
const limit = Number(limitText);
const lines = readFileSync(planFile!, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as PlanLine);
const participants = new Set<string>();
const chosen: PlanLine[] = [];
for (const line of lines) {
  if (!participants.has(line.participantId)) {
    if (participants.size >= limit) continue;
    participants.add(line.participantId);
  }
  chosen.push(line);
}
const env = process.env;
const analytics = new Analytics({ writeKey: env.SEGMENT_WRITE_KEY!, host: env.SEGMENT_HOST!, flushAt: 1 });
const cio = new TrackClient(env.CUSTOMERIO_SITE_ID!, env.CUSTOMERIO_API_KEY!, { url: `${env.CUSTOMERIO_TRACK_URL}/api/v1` });
const timings: Record<string, { ops: number; ms: number }> = { segment: { ops: 0, ms: 0 }, customerio: { ops: 0, ms: 0 } };
for (const line of chosen) {
  const started = performance.now();
  const p = line.payload;
  if (line.destination === 'segment') {
    await new Promise<void>((resolve, reject) => {
      const done = (error?: unknown): void => (error ? reject(error as Error) : resolve());
      if (line.kind === 'identify') analytics.identify({ userId: line.userId, traits: p.traits as Record<string, unknown>, messageId: p.messageId as string }, done);
      else analytics.track({ userId: line.userId, event: p.event as string, properties: p.properties as Record<string, unknown>, timestamp: p.timestamp as string, messageId: p.messageId as string }, done);
    });
  } else if (line.kind === 'identify') {
    await cio.identify(line.userId, p.attributes as Record<string, unknown>);
  } else {
    await cio.track(line.userId, { name: p.name, id: p.id, timestamp: p.timestamp, data: p.attributes });
  }
  timings[line.destination]!.ops += 1;
  timings[line.destination]!.ms += performance.now() - started;
}
await analytics.closeAndFlush();
console.log(JSON.stringify({ participants: participants.size, timings }));
