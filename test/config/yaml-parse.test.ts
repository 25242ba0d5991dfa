// How bootstrap YAML is read: YAML 1.2's core schema, aliases bounded and acyclic, and
// the errors of an invalid bootstrap the same whether it is walked once or twice.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadBootstrap, parseConfigText } from '../../src/config/bootstrap-loader.js';
import { ConfigErrors } from '../../src/config/errors.js';

function errorsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigErrors) return e.errors.map((x) => x.message);
    throw e;
  }
  assert.fail('expected a config error');
}

describe('bootstrap YAML', () => {
  it("resolves scalars by YAML 1.2's core schema", () => {
    const v = parseConfigText(
      [
        'a:',
        'b: ~',
        'c: TRUE',
        'd: 0o14',
        'e: 0x1F',
        'f: -12',
        'g: 1.5e3',
        'h: -.inf',
        'i: 1_000',
        'j: 0b101',
        'k: yes',
        'l: 2001-12-14',
        'm: "12"',
        'n: !custom 7',
      ].join('\n'),
      't',
    );
    assert.deepEqual(v, {
      a: null,
      b: null,
      c: true,
      d: 12,
      e: 31,
      f: -12,
      g: 1500,
      h: -Infinity,
      i: '1_000',
      j: '0b101',
      k: 'yes',
      l: '2001-12-14',
      m: '12',
      n: '7',
    });
  });

  it('expands an alias into a copy of the anchored node', () => {
    const b = loadBootstrap({
      configYaml: `
node:
  id: n
  metadata: { first: &m { zone: a, rack: [1, 2] }, second: *m }
`,
    }) as { node: { metadata: Record<string, unknown> } };
    assert.deepEqual(b.node.metadata.second, { zone: 'a', rack: [1, 2] });
    assert.deepEqual(b.node.metadata.first, b.node.metadata.second);
  });

  it('rejects an alias that contains itself', () => {
    const [msg] = errorsOf(() => loadBootstrap({ configYaml: 'node: &n { metadata: { self: *n } }' }));
    assert.match(msg!, /--config-yaml: invalid YAML\/JSON: an alias refers to a node that contains it/);
  });

  it('rejects aliases that expand exponentially, without expanding them', () => {
    const levels = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]'];
    for (let i = 1; i < 9; i++) {
      const prev = String.fromCharCode(96 + i);
      const name = String.fromCharCode(97 + i);
      levels.push(`${name}: &${name} [${Array(10).fill(`*${prev}`).join(',')}]`);
    }
    const t = Date.now();
    const [msg] = errorsOf(() => loadBootstrap({ configYaml: levels.join('\n') }));
    assert.match(msg!, /invalid YAML\/JSON: aliases expand to \d+ nodes, too many/);
    assert.ok(Date.now() - t < 2000);
  });

  it('reports YAML errors with line and column', () => {
    const [msg] = errorsOf(() => loadBootstrap({ configYaml: 'node:\n  id: [a\n' }));
    assert.match(msg!, /^--config-yaml:\d+:\d+: invalid YAML\/JSON: /);
    const [multi] = errorsOf(() => loadBootstrap({ configYaml: 'node: {}\n---\nnode: {}\n' }));
    assert.match(multi!, /^--config-yaml: invalid YAML\/JSON: .*single document/);
  });

  it('reports the schema errors first when required fields are missing too, as two passes did', () => {
    // A cluster without its required name, and a wrong type further on: the type error is
    // what the first pass (no required checks) reports; the missing name only once that passes.
    const errs = errorsOf(() =>
      loadBootstrap({
        configYaml: `
static_resources:
  clusters:
  - connect_timeout: 1s
  - name: b
    connect_timeout: soon
`,
      }),
    );
    assert.equal(errs.length, 1, errs.join('\n'));
    assert.match(errs[0]!, /static_resources\.clusters\[1\]\.connect_timeout/);
    const required = errorsOf(() =>
      loadBootstrap({ configYaml: 'static_resources: { clusters: [{ connect_timeout: 1s }] }' }),
    );
    assert.ok(
      required.some((e) => /clusters\[0\]\.name: required field is missing/.test(e)),
      required.join('\n'),
    );
  });
});
