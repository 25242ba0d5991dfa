/** A configuration error that names where in the config it is (`a.b[2].c`). */
export class ConfigError extends Error {
  constructor(
    readonly path: string,
    readonly detail: string,
  ) {
    super(path ? `${path}: ${detail}` : detail);
    this.name = 'ConfigError';
  }
}

/** Several errors found in one pass, reported together; the first is the headline. */
export class ConfigErrors extends Error {
  constructor(readonly errors: ConfigError[]) {
    super(errors.map((e) => e.message).join('\n'));
    this.name = 'ConfigErrors';
  }
}

export function joinPath(base: string, key: string): string {
  return base ? `${base}.${key}` : key;
}
