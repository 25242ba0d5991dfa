// proto3 JSON Durations, on their own so that reading a compiled config does
// not load the proto walker (proto-json.ts) into the serving process.

/** Parses a proto3 JSON Duration ("1.5s", "-0.001s") into [seconds, nanos]. */
export function parseDurationString(s: string): [number, number] | undefined {
  const m = /^(-)?(\d+)(?:\.(\d{1,9}))?s$/.exec(s);
  if (!m) return undefined;
  const sign = m[1] ? -1 : 1;
  const seconds = Number(m[2]);
  const nanos = m[3] ? Number(m[3].padEnd(9, '0')) : 0;
  return [sign * seconds, sign * nanos];
}
