// envoy.access_loggers.file, envoy.access_loggers.stdout and .stderr.
import { type AccessLogger, compileLogFormat, lineSink } from '../../accesslog/access-log.js';
import type { ExtensionFactory } from '../registry.js';

const P = 'type.googleapis.com/envoy.extensions.access_loggers';

export const fileAccessLogFactory: ExtensionFactory<AccessLogger> = {
  name: 'envoy.access_loggers.file',
  typeUrls: [`${P}.file.v3.FileAccessLog`],
  category: 'access_logger',
  create(r) {
    const path = r.str('path', '');
    if (r.has('format'))
      throw r.error('format', 'the deprecated format field is not supported; use log_format');
    if (r.has('json_format'))
      throw r.error('json_format', 'the deprecated json_format field is not supported; use log_format');
    if (r.has('typed_json_format'))
      throw r.error(
        'typed_json_format',
        'the deprecated typed_json_format field is not supported; use log_format',
      );
    const format = compileLogFormat(r);
    const sink = lineSink(path);
    return { log: (c) => sink(format(c)) };
  },
};

export const stdoutAccessLogFactory: ExtensionFactory<AccessLogger> = {
  name: 'envoy.access_loggers.stdout',
  typeUrls: [`${P}.stream.v3.StdoutAccessLog`],
  category: 'access_logger',
  create(r) {
    const format = compileLogFormat(r);
    const sink = lineSink('/dev/stdout');
    return { log: (c) => sink(format(c)) };
  },
};

export const stderrAccessLogFactory: ExtensionFactory<AccessLogger> = {
  name: 'envoy.access_loggers.stderr',
  typeUrls: [`${P}.stream.v3.StderrAccessLog`],
  category: 'access_logger',
  create(r) {
    const format = compileLogFormat(r);
    const sink = lineSink('/dev/stderr');
    return { log: (c) => sink(format(c)) };
  },
};
