import { DESTINATION_LABELS } from '../config/defaults.js';
import { describeViolation, measureOperation } from '../destinations/limits.js';
import type { RecordLocation } from '../model/participant.js';
import type { Operation, PlanItem } from './types.js';

/** How an operation is named in a report: `identify`, `event "Referral Made"`, `group call for account acme`. */
function describeOperation(operation: Operation): string {
  switch (operation.kind) {
    case 'identify':
      return 'identify';
    case 'track':
      return `event "${operation.name}"`;
    case 'group':
      return `group call for account ${operation.accountId}`;
    case 'object':
      return `object for account ${operation.accountId}`;
    case 'relationship':
      return `relationship to account ${operation.accountId}`;
  }
}

/**
 * An operation that breaks a destination limit, measured as it goes on the wire (destinations/limits.ts), is
 * invalid, reported with every limit it breaks, and never sent. What passes carries its wire size.
 */
export function* checked(operation: Operation, location: RecordLocation | undefined): Generator<PlanItem> {
  const { wireBytes, violations } = measureOperation(operation.destination, operation.payload, operation.bytes);
  if (violations.length > 0) {
    yield {
      type: 'invalid',
      reason: `${DESTINATION_LABELS[operation.destination]} ${describeOperation(operation)} for ${operation.userId} is not sent: ${violations.map(describeViolation).join('; ')}`,
      location,
      participantId: operation.participantId,
      destination: operation.destination,
      limits: violations,
      code: `over-limit/${operation.destination}/${operation.kind}/${[...new Set(violations.map((v) => v.limit))].join('+')}`,
    };
    return;
  }
  // The operation was built just now for this check: it takes its wire size in place.
  operation.bytes = wireBytes;
  yield { type: 'operation', operation };
}
