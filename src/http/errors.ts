/**
 * A request that failed for good. Carries what a person needs (service, status, the service's own code and
 * message, its request id) and never the credentials: the client never puts headers in here.
 */
export class HttpError extends Error {
  constructor(
    readonly service: string,
    readonly status: number | undefined,
    message: string,
    readonly details: { code?: string; requestId?: string; path?: string; body?: unknown } = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }
}
