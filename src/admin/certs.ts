// Certificates Herald has loaded, as Envoy's /certs shows them (admin.v3.Certificates),
// and the days until the first of them expires (server.days_until_first_cert_expiring).
// Only parsed details leave this module, never the certificate bytes.
import type { X509Certificate } from 'node:crypto';
import { cryptoModule } from '../common/lazy-modules.js';
import type { LoadedCertificate } from '../common/tls-params.js';

/** One TLS context: a filter chain's DownstreamTlsContext or a cluster's UpstreamTlsContext. */
export interface TlsContextCertificates {
  certificates: LoadedCertificate[];
  caCertificates: LoadedCertificate[];
}

export type SubjectAltName = { dns: string } | { uri: string } | { ip_address: string };

/** admin.v3.CertificateDetails in proto3 JSON (uint64 as a string, Timestamps as RFC 3339). */
export interface CertificateDetails {
  path: string;
  serial_number: string;
  subject_alt_names: SubjectAltName[];
  days_until_expiration: string;
  valid_from: string;
  expiration_time: string;
}

export interface CertificatesJson {
  certificates: Array<{ ca_cert: CertificateDetails[]; cert_chain: CertificateDetails[] }>;
}

/** Envoy's value for the gauge when no certificate is loaded (uint32 max). */
export const NO_CERTIFICATE_DAYS = 0xffffffff;

const DAY_MS = 86_400_000;
const parsed = new WeakMap<LoadedCertificate, X509Certificate | null>();

/**
 * The certificate Envoy reports for a loaded PEM: the first one in it (the leaf of a chain, the
 * first CA of a bundle). Undefined when it does not parse.
 */
function firstCertificate(c: LoadedCertificate): X509Certificate | undefined {
  let x = parsed.get(c);
  if (x === undefined) {
    try {
      x = new (cryptoModule().X509Certificate)(c.pem);
    } catch {
      x = null;
    }
    parsed.set(c, x);
  }
  return x ?? undefined;
}

/** Whole days until the certificate expires; undefined once it has (Envoy reports 0 then). */
function daysUntilExpiration(x: X509Certificate, now: number): number | undefined {
  const ms = Date.parse(x.validTo) - now;
  return ms < 0 || Number.isNaN(ms) ? undefined : Math.floor(ms / DAY_MS);
}

/** A date as a proto3 JSON Timestamp (no fractional seconds when there are none). */
function timestamp(d: string): string {
  const t = Date.parse(d);
  return Number.isNaN(t) ? '' : new Date(t).toISOString().replace('.000Z', 'Z');
}

/**
 * Node's subjectAltName ("DNS:a, IP Address:1.2.3.4, URI:x") as SubjectAlternateNames. Values
 * with separators in them are JSON-quoted by Node. Only DNS, URI and IP entries are kept.
 */
export function parseSubjectAltNames(s: string | undefined): SubjectAltName[] {
  const out: SubjectAltName[] = [];
  if (!s) return out;
  const re = /(DNS|URI|IP Address|[A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)(?:, |$)/g;
  for (let m = re.exec(s); m; m = re.exec(s)) {
    if (m[0] === '') break;
    let v = m[2] ?? '';
    if (v.startsWith('"')) {
      try {
        v = JSON.parse(v) as string;
      } catch {
        // Kept as printed.
      }
    }
    if (m[1] === 'DNS') out.push({ dns: v });
    else if (m[1] === 'URI') out.push({ uri: v });
    else if (m[1] === 'IP Address') out.push({ ip_address: v });
  }
  return out;
}

export function certificateDetails(c: LoadedCertificate, now: number): CertificateDetails | undefined {
  const x = firstCertificate(c);
  if (!x) return undefined;
  return {
    path: c.path,
    serial_number: x.serialNumber.toLowerCase(),
    subject_alt_names: parseSubjectAltNames(x.subjectAltName),
    days_until_expiration: String(daysUntilExpiration(x, now) ?? 0),
    valid_from: timestamp(x.validFrom),
    expiration_time: timestamp(x.validTo),
  };
}

/** The /certs body: one entry per TLS context. */
export function certificatesJson(contexts: TlsContextCertificates[], now = Date.now()): CertificatesJson {
  const details = (list: LoadedCertificate[]) =>
    list.flatMap((c) => {
      const d = certificateDetails(c, now);
      return d ? [d] : [];
    });
  return {
    certificates: contexts.map((t) => ({
      ca_cert: details(t.caCertificates),
      cert_chain: details(t.certificates),
    })),
  };
}

/**
 * server.days_until_first_cert_expiring as Envoy computes it: the fewest days over every
 * context's certificates and CAs; 0 once any has expired; uint32 max with none loaded.
 */
export function daysUntilFirstCertExpiring(contexts: TlsContextCertificates[], now = Date.now()): number {
  let min = NO_CERTIFICATE_DAYS;
  for (const t of contexts)
    for (const c of [...t.certificates, ...t.caCertificates]) {
      const x = firstCertificate(c);
      if (!x) continue;
      const days = daysUntilExpiration(x, now);
      if (days === undefined) return 0;
      min = Math.min(min, days);
    }
  return min;
}
