import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type FormatContext,
  FormatError,
  SubstitutionFormatter,
  strftime,
} from '../../src/common/substitution-formatter.js';
import { ResponseFlag, StreamInfo } from '../../src/http/stream-info.js';

const T = Date.UTC(2026, 10, 27, 9, 5, 7, 42);

function ctx(): FormatContext {
  const info = new StreamInfo();
  (info as { startTime: number }).startTime = T;
  info.responseCode = 503;
  info.setFlag(ResponseFlag.UF);
  info.setFlag(ResponseFlag.URX);
  return {
    info,
    requestHeaders: { ':path': '/a', 'x-envoy-original-path': '/orig', 'user-agent': 'curl/8' },
    responseHeaders: { 'x-envoy-upstream-service-time': '12' },
    protocol: 'HTTP/1.1',
    remoteAddress: '10.0.0.1',
    remotePort: 5555,
    directRemoteAddress: '127.0.0.1',
    directRemotePort: 4444,
    localAddress: '127.0.0.1',
    localPort: 10000,
  };
}

describe('command operators', () => {
  it('START_TIME: the default is ISO 8601 with milliseconds; strftime formats in UTC', () => {
    assert.equal(new SubstitutionFormatter('%START_TIME%').format(ctx()), '2026-11-27T09:05:07.042Z');
    assert.equal(
      new SubstitutionFormatter('%START_TIME(%Y/%m/%d %H:%M:%S.%3f %z)%').format(ctx()),
      '2026/11/27 09:05:07.042 +0000',
    );
    assert.equal(strftime('%Y-%m-%dT%H:%M:%E3SZ', T), '2026-11-27T09:05:07.042Z');
    assert.equal(strftime('%s %f %6f %j %a %b %%', T), '1795770307 042000000 042000 331 Fri Nov %');
  });

  it('REQ/RESP with fallbacks and truncation, flags short and long, addresses', () => {
    const f = new SubstitutionFormatter(
      '%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %REQ(USER-AGENT):4% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_FLAGS_LONG% %DOWNSTREAM_REMOTE_ADDRESS% %DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT% %REQ(X-MISSING)% 100%%',
    );
    assert.equal(
      f.format(ctx()),
      '/orig curl 12 503 UF,URX UpstreamConnectionFailure,UpstreamRetryLimitExceeded 10.0.0.1:5555 127.0.0.1 - 100%',
    );
  });

  it('an unknown operator is an error that names it', () => {
    assert.throws(
      () => new SubstitutionFormatter('%NOT_AN_OPERATOR%'),
      (e: unknown) => {
        assert.ok(e instanceof FormatError);
        assert.match((e as Error).message, /unknown command operator %NOT_AN_OPERATOR%/);
        return true;
      },
    );
    assert.throws(() => new SubstitutionFormatter('%REQ(x'), FormatError);
  });
});
