// Envoy's PayloadMatcher: every expected block must appear in the data, in order.

export function payloadMatches(expected: readonly Buffer[], data: Buffer): boolean {
  let from = 0;
  for (const block of expected) {
    const at = data.indexOf(block, from);
    if (at < 0) return false;
    from = at + block.length;
  }
  return true;
}
