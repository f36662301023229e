/**
 * The examples' command line: their own options plus `-h/--help`. `--help` prints the
 * usage and exits 0; an option the example does not take prints the usage on stderr and
 * exits 2 (instead of an uncaught ERR_PARSE_ARGS_UNKNOWN_OPTION).
 */
import { type ParseArgsConfig, parseArgs } from 'node:util';

type Options = NonNullable<ParseArgsConfig['options']>;
const help = { help: { type: 'boolean', short: 'h' } } as const;

/** Parses `process.argv` for an example called `name` taking `options`; see the file's header. */
export function commandLine<O extends Options>(
  name: string,
  usage: string,
  options: O,
): ReturnType<typeof parseArgs<{ options: O & typeof help }>>['values'] {
  try {
    const { values } = parseArgs({ options: { ...options, ...help } });
    if ((values as { help?: boolean }).help) {
      console.log(usage);
      process.exit(0);
    }
    return values;
  } catch (err) {
    console.error(`${name}: ${(err as Error).message}\n\n${usage}`);
    return process.exit(2);
  }
}
