import type { Destination } from '../config/defaults.js';
import type { DeliveryQueue } from '../state/store.js';

/** Operations still waiting for any of these destinations: what a stopped run leaves for the next one. */
export async function waitingIn(queue: Pick<DeliveryQueue, 'waiting'>, destinations: readonly Destination[]): Promise<number> {
  let waiting = 0;
  for (const destination of destinations) waiting += await queue.waiting(destination);
  return waiting;
}
