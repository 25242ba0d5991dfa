// envoy.access_loggers.file, envoy.access_loggers.stdout and .stderr.
import { type AccessLogger, formattedLogger } from '../../accesslog/access-log.js';
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
    return formattedLogger(r, path);
  },
};

function streamLogger(kind: 'stdout' | 'stderr'): ExtensionFactory<AccessLogger> {
  const type = kind === 'stdout' ? 'StdoutAccessLog' : 'StderrAccessLog';
  return {
    name: `envoy.access_loggers.${kind}`,
    typeUrls: [`${P}.stream.v3.${type}`],
    category: 'access_logger',
    create: (r) => formattedLogger(r, `/dev/${kind}`),
  };
}

export const stdoutAccessLogFactory = streamLogger('stdout');
export const stderrAccessLogFactory = streamLogger('stderr');
