// The requests a pool holds while no connection can take them (Envoy's
// pending requests): bounded by the circuit breakers, oldest first, counted
// in upstream_rq_pending_*; a request over the limit fails at once (503 UO).
import type { Headers } from '../common/substitution-formatter.js';
import type { ClusterStats } from './cluster.js';
import { DeferredRequest, NOOP_REQUEST } from './deferred-request.js';
import type { ResourceManager } from './resource-manager.js';
import type {
  NewStreamOptions,
  ResetReason,
  UpstreamCallbacks,
  UpstreamRequest,
} from './upstream-request.js';

export class PendingQueue {
  private readonly queue: DeferredRequest[] = [];

  constructor(
    private readonly stats: ClusterStats,
    private readonly resources: () => ResourceManager,
  ) {}

  get length(): number {
    return this.queue.length;
  }

  /** The oldest waiting request's options (a connection made for the queue uses its timeout). */
  peek(): DeferredRequest | undefined {
    return this.queue[0];
  }

  /** Queues a request, or fails it at once when max_pending_requests is reached. */
  add(headers: Headers, opts: NewStreamOptions, cb: UpstreamCallbacks): UpstreamRequest {
    const resources = this.resources();
    if (!resources.pendingRequests.canCreate()) return this.overflow(cb);
    const req = new DeferredRequest(headers, opts, cb, (r) => this.cancel(r));
    this.queue.push(req);
    resources.pendingRequests.inc();
    this.stats.upstream_rq_pending_total.inc();
    this.stats.upstream_rq_pending_active.inc();
    return req;
  }

  /** Circuit breaker tripped: 503 UO, without waiting and without retry. */
  overflow(cb: UpstreamCallbacks): UpstreamRequest {
    this.stats.upstream_rq_pending_overflow.inc();
    queueMicrotask(() => cb.onReset('overflow', 'overflow'));
    return NOOP_REQUEST;
  }

  take(): DeferredRequest | undefined {
    const req = this.queue.shift();
    if (req) {
      this.resources().pendingRequests.dec();
      this.stats.upstream_rq_pending_active.dec();
    }
    return req;
  }

  /** Fails every waiting request (a connect failure, the pool going away). */
  failAll(reason: ResetReason, detail: string): void {
    let req: DeferredRequest | undefined;
    while ((req = this.take())) req.cb.onReset(reason, detail);
  }

  private cancel(req: DeferredRequest): void {
    const i = this.queue.indexOf(req);
    if (i < 0) return;
    this.queue.splice(i, 1);
    this.resources().pendingRequests.dec();
    this.stats.upstream_rq_pending_active.dec();
    this.stats.upstream_rq_cancelled.inc();
  }
}
