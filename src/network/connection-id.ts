// One id space for every connection, downstream and upstream (%CONNECTION_ID%,
// %UPSTREAM_CONNECTION_ID%, the [C<id>] of connection logs), as Envoy numbers them.
// A worker's ids are spread by its index so ids from different workers never collide.
let next = 0;
let stride = 1;
let offset = 0;

export function configureConnectionIds(workerIndex: number, workers: number): void {
  offset = workerIndex;
  stride = Math.max(1, workers);
  next = 0;
}

export function nextConnectionId(): number {
  return next++ * stride + offset;
}
