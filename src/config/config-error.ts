/**
 * The one error type of config loading. Its message is the single stderr line an operator sees
 * (prefixed "config: "), so every source, check and explanation throws it through `fail`.
 */
export class ConfigError extends Error {
  readonly code = 'E_CONFIG';
  constructor(message: string) {
    // Messages are printed as one stderr line; never let a value smuggle in a second one.
    super(message.replace(/[\r\n]+/g, ' '));
    this.name = 'ConfigError';
  }
}

export const fail = (message: string): never => {
  throw new ConfigError(`config: ${message}`);
};
