/**
 * The one error type of config loading. Its message is the single stderr line an operator sees
 * (prefixed "config: "), so every source, check and explanation throws it through `fail`.
 */
export class ConfigError extends Error {
  readonly code = 'E_CONFIG';
  constructor(message: string) {
    // Messages are printed as one stderr line; never let a value smuggle in a second one, nor a
    // NUL or an ESC from a file's bytes reach the terminal (the config fuzz target found "\0").
    super(
      message
        .replace(/[\r\n]+/g, ' ')
        .replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`),
    );
    this.name = 'ConfigError';
  }
}

export const fail = (message: string): never => {
  throw new ConfigError(`config: ${message}`);
};
