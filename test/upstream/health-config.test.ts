// health_checks, outlier_detection and common_lb_config as Herald compiles them:
// Envoy's defaults, and fields Herald does not implement rejected by path.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigErrors } from '../../src/config/errors.js';
import { validateConfig } from '../../src/server/validate.js';

function cluster(extra: string): string {
  return `
static_resources:
  clusters:
  - name: a
    connect_timeout: 1s
${extra
  .split('\n')
  .map((l) => `    ${l}`)
  .join('\n')}
    load_assignment:
      cluster_name: a
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 1 } } } }] }]
`;
}

function errorsOf(yaml: string): string[] {
  try {
    validateConfig({ configYaml: yaml });
  } catch (e) {
    if (e instanceof ConfigErrors) return e.errors.map((x) => x.message);
    throw e;
  }
  assert.fail('expected a config error');
}

const HC = `- timeout: 1s
  interval: 2s
  unhealthy_threshold: 3
  healthy_threshold: 2`;

describe('health config', () => {
  it('health check defaults are Envoy’s', () => {
    const c = validateConfig({
      configYaml: cluster(`health_checks:\n${HC}\n  http_health_check: { path: /hc }`),
    }).clusters[0]!;
    const hc = c.healthCheck!;
    assert.equal(hc.noTrafficIntervalMs, 60_000);
    assert.equal(hc.unhealthyIntervalMs, 2000);
    assert.equal(hc.unhealthyEdgeIntervalMs, 2000);
    assert.equal(hc.healthyEdgeIntervalMs, 2000);
    assert.equal(hc.reuseConnection, true);
    assert.equal(hc.checker.kind, 'http');
    if (hc.checker.kind === 'http') {
      assert.equal(hc.checker.method, 'GET');
      assert.deepEqual(hc.checker.expectedStatuses, []);
    }
    assert.equal(c.healthyPanicThreshold, 50);
    assert.equal(c.outlierDetection, undefined);
  });

  it('outlier detection defaults are Envoy’s; max_ejection_time follows a larger base', () => {
    const od = validateConfig({ configYaml: cluster('outlier_detection: { base_ejection_time: 400s }') })
      .clusters[0]!.outlierDetection!;
    assert.equal(od.consecutive5xx, 5);
    assert.equal(od.intervalMs, 10_000);
    assert.equal(od.maxEjectionPercent, 10);
    assert.equal(od.enforcingConsecutiveGatewayFailure, 0);
    assert.equal(od.enforcingFailurePercentage, 0);
    assert.equal(od.successRateStdevFactor, 1900);
    assert.equal(od.maxEjectionTimeMs, 400_000);
  });

  it('rejects what Herald does not implement, by path', () => {
    assert.match(
      errorsOf(cluster(`health_checks:\n${HC}\n  alt_port: 8080\n  tcp_health_check: {}`))[0]!,
      /^static_resources\.clusters\[0\]\.health_checks\[0\]\.alt_port: is not supported by Herald/,
    );
    assert.match(
      errorsOf(cluster(`health_checks:\n${HC}\n  custom_health_check: { name: x }`))[0]!,
      /health_checks\[0\]\.custom_health_check: custom health checkers are not supported/,
    );
    assert.match(
      errorsOf(cluster(`health_checks:\n${HC}\n  tcp_health_check: {}\n${HC}\n  tcp_health_check: {}`))[0]!,
      /clusters\[0\]\.health_checks: only one health check per cluster is supported/,
    );
    assert.match(
      errorsOf(cluster('common_lb_config: { update_merge_window: 1s }'))[0]!,
      /clusters\[0\]\.common_lb_config\.update_merge_window: is not supported by Herald/,
    );
    assert.match(
      errorsOf(cluster('outlier_detection: { base_ejection_time: 10s, max_ejection_time: 5s }'))[0]!,
      /outlier_detection\.max_ejection_time: max_ejection_time cannot be smaller than base_ejection_time/,
    );
    assert.match(
      errorsOf(cluster(`health_checks:\n${HC}\n  tcp_health_check: { send: { text: "zz" } }`))[0]!,
      /tcp_health_check\.send\.text: 'zz' is not a hex string/,
    );
  });
});
