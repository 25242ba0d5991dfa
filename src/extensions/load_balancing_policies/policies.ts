// load_balancing_policy typed extensions (envoy.load_balancing_policies.*):
// the v3 way of naming a cluster's LB policy. Each maps onto Herald's
// built-in balancers; the first policy in the list that Herald knows is used,
// as Envoy does.
import type { Reader } from '../../config/reader.js';
import type { LbPolicy } from '../../upstream/cluster-config.js';
import type { ExtensionFactory } from '../registry.js';

export interface LbPolicyConfig {
  policy: LbPolicy;
  choiceCount?: number;
  ringHash?: { minimumRingSize: number; maximumRingSize: number };
  maglevTableSize?: number;
}

const P = 'type.googleapis.com/envoy.extensions.load_balancing_policies';

function rejectLocality(r: Reader): void {
  if (r.has('locality_lb_config'))
    throw r.error('locality_lb_config', 'locality-aware load balancing is not supported yet');
  if (r.has('locality_weighted_lb_config'))
    throw r.error('locality_weighted_lb_config', 'locality-weighted load balancing is not supported yet');
  if (r.has('slow_start_config')) throw r.error('slow_start_config', 'slow start is not supported yet');
}

export const roundRobinPolicy: ExtensionFactory<LbPolicyConfig> = {
  name: 'envoy.load_balancing_policies.round_robin',
  typeUrls: [`${P}.round_robin.v3.RoundRobin`],
  category: 'lb_policy',
  create(r) {
    rejectLocality(r);
    return { policy: 'ROUND_ROBIN' };
  },
};

export const leastRequestPolicy: ExtensionFactory<LbPolicyConfig> = {
  name: 'envoy.load_balancing_policies.least_request',
  typeUrls: [`${P}.least_request.v3.LeastRequest`],
  category: 'lb_policy',
  create(r) {
    rejectLocality(r);
    return { policy: 'LEAST_REQUEST', choiceCount: r.num('choice_count', 2) };
  },
};

export const randomPolicy: ExtensionFactory<LbPolicyConfig> = {
  name: 'envoy.load_balancing_policies.random',
  typeUrls: [`${P}.random.v3.Random`],
  category: 'lb_policy',
  create(r) {
    rejectLocality(r);
    return { policy: 'RANDOM' };
  },
};

export const ringHashPolicy: ExtensionFactory<LbPolicyConfig> = {
  name: 'envoy.load_balancing_policies.ring_hash',
  typeUrls: [`${P}.ring_hash.v3.RingHash`],
  category: 'lb_policy',
  create(r) {
    rejectLocality(r);
    if (r.enum<string>('hash_function', 'XX_HASH') !== 'XX_HASH')
      throw r.error('hash_function', 'only XX_HASH is supported');
    return {
      policy: 'RING_HASH',
      ringHash: {
        minimumRingSize: r.num('minimum_ring_size', 1024),
        maximumRingSize: r.num('maximum_ring_size', 8388608),
      },
    };
  },
};

export const maglevPolicy: ExtensionFactory<LbPolicyConfig> = {
  name: 'envoy.load_balancing_policies.maglev',
  typeUrls: [`${P}.maglev.v3.Maglev`],
  category: 'lb_policy',
  create(r) {
    rejectLocality(r);
    return { policy: 'MAGLEV', maglevTableSize: r.num('table_size', 65537) };
  },
};
