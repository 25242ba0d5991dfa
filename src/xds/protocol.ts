// The discovery messages and gRPC services of xDS v3
// (envoy/service/discovery/v3/{discovery,ads}.proto and the per-type services
// lds/rds/cds/eds/sds.proto), with codecs built from the Envoy protos.
// Method paths are read from the service descriptors, not retyped.
import type * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { type EnvoyProtos, envoyProtos } from '../config/envoy-protos.js';
import type { JsonObject } from '../config/proto-json.js';
import {
  CLUSTER_TYPE,
  ENDPOINT_TYPE,
  type EncodedAny,
  jsonToMessageObject,
  LISTENER_TYPE,
  lookupResolved,
  messageToJson,
  ROUTE_TYPE,
  SECRET_TYPE,
} from './resources.js';

/** google.rpc.Status as xDS uses it in error_detail. */
export interface RpcStatus {
  code: number;
  message: string;
}

/** google.rpc.Code.INVALID_ARGUMENT: what a client puts in a NACK. */
export const INVALID_ARGUMENT = 3;

export interface DiscoveryRequest {
  version_info: string;
  node?: JsonObject | undefined;
  resource_names: string[];
  type_url: string;
  response_nonce: string;
  error_detail?: RpcStatus | undefined;
}

export interface DiscoveryResponse {
  version_info: string;
  resources: EncodedAny[];
  type_url: string;
  nonce: string;
  control_plane?: { identifier: string } | undefined;
}

export interface DeltaDiscoveryRequest {
  node?: JsonObject | undefined;
  type_url: string;
  resource_names_subscribe: string[];
  resource_names_unsubscribe: string[];
  initial_resource_versions: Record<string, string>;
  response_nonce: string;
  error_detail?: RpcStatus | undefined;
}

export interface DeltaResource {
  name: string;
  version: string;
  resource?: EncodedAny | undefined;
  aliases?: string[] | undefined;
}

export interface DeltaDiscoveryResponse {
  system_version_info: string;
  resources: DeltaResource[];
  type_url: string;
  removed_resources: string[];
  nonce: string;
  control_plane?: { identifier: string } | undefined;
}

const PKG = 'envoy.service.discovery.v3';

/** The per-type discovery services, by the resource type they serve. */
const PER_TYPE_SERVICES: ReadonlyMap<string, string> = new Map([
  [LISTENER_TYPE, 'envoy.service.listener.v3.ListenerDiscoveryService'],
  [ROUTE_TYPE, 'envoy.service.route.v3.RouteDiscoveryService'],
  [CLUSTER_TYPE, 'envoy.service.cluster.v3.ClusterDiscoveryService'],
  [ENDPOINT_TYPE, 'envoy.service.endpoint.v3.EndpointDiscoveryService'],
  [SECRET_TYPE, 'envoy.service.secret.v3.SecretDiscoveryService'],
]);
const ADS_SERVICE = `${PKG}.AggregatedDiscoveryService`;

interface Types {
  request: protobuf.Type;
  response: protobuf.Type;
  deltaRequest: protobuf.Type;
  deltaResponse: protobuf.Type;
  node: protobuf.Type;
}

class Codec {
  readonly types: Types;
  private readonly nodeObjects = new WeakMap<JsonObject, unknown>();

  constructor(readonly protos: EnvoyProtos) {
    this.types = {
      request: lookupResolved(protos, `${PKG}.DiscoveryRequest`),
      response: lookupResolved(protos, `${PKG}.DiscoveryResponse`),
      deltaRequest: lookupResolved(protos, `${PKG}.DeltaDiscoveryRequest`),
      deltaResponse: lookupResolved(protos, `${PKG}.DeltaDiscoveryResponse`),
      node: lookupResolved(protos, 'envoy.config.core.v3.Node'),
    };
  }

  private nodeObject(node: JsonObject | undefined): unknown {
    if (!node) return undefined;
    let o = this.nodeObjects.get(node);
    if (o === undefined) {
      o = jsonToMessageObject(this.protos, this.types.node, node);
      this.nodeObjects.set(node, o);
    }
    return o;
  }

  private nodeJson(msg: unknown): JsonObject | undefined {
    if (!msg) return undefined;
    return messageToJson(this.protos, this.types.node, msg as Record<string, unknown>) as JsonObject;
  }

  encodeRequest = (r: DiscoveryRequest): Buffer => {
    const t = this.types.request;
    return Buffer.from(t.encode(t.fromObject({ ...r, node: this.nodeObject(r.node) })).finish());
  };

  decodeRequest = (b: Buffer): DiscoveryRequest => {
    const m = this.types.request.decode(b) as unknown as Record<string, unknown>;
    return {
      version_info: (m.version_info as string) ?? '',
      node: this.nodeJson(m.node),
      resource_names: [...((m.resource_names as string[]) ?? [])],
      type_url: (m.type_url as string) ?? '',
      response_nonce: (m.response_nonce as string) ?? '',
      error_detail: statusOf(m.error_detail),
    };
  };

  encodeResponse = (r: DiscoveryResponse): Buffer => {
    const t = this.types.response;
    return Buffer.from(t.encode(t.fromObject(r as unknown as Record<string, unknown>)).finish());
  };

  decodeResponse = (b: Buffer): DiscoveryResponse => {
    const m = this.types.response.decode(b) as unknown as Record<string, unknown>;
    return {
      version_info: (m.version_info as string) ?? '',
      resources: ((m.resources as EncodedAny[]) ?? []).map(anyOf),
      type_url: (m.type_url as string) ?? '',
      nonce: (m.nonce as string) ?? '',
      control_plane: controlPlaneOf(m.control_plane),
    };
  };

  encodeDeltaRequest = (r: DeltaDiscoveryRequest): Buffer => {
    const t = this.types.deltaRequest;
    return Buffer.from(t.encode(t.fromObject({ ...r, node: this.nodeObject(r.node) })).finish());
  };

  decodeDeltaRequest = (b: Buffer): DeltaDiscoveryRequest => {
    const m = this.types.deltaRequest.decode(b) as unknown as Record<string, unknown>;
    return {
      node: this.nodeJson(m.node),
      type_url: (m.type_url as string) ?? '',
      resource_names_subscribe: [...((m.resource_names_subscribe as string[]) ?? [])],
      resource_names_unsubscribe: [...((m.resource_names_unsubscribe as string[]) ?? [])],
      initial_resource_versions: { ...((m.initial_resource_versions as Record<string, string>) ?? {}) },
      response_nonce: (m.response_nonce as string) ?? '',
      error_detail: statusOf(m.error_detail),
    };
  };

  encodeDeltaResponse = (r: DeltaDiscoveryResponse): Buffer => {
    const t = this.types.deltaResponse;
    return Buffer.from(t.encode(t.fromObject(r as unknown as Record<string, unknown>)).finish());
  };

  decodeDeltaResponse = (b: Buffer): DeltaDiscoveryResponse => {
    const m = this.types.deltaResponse.decode(b) as unknown as Record<string, unknown>;
    return {
      system_version_info: (m.system_version_info as string) ?? '',
      resources: ((m.resources as Record<string, unknown>[]) ?? []).map((r) => ({
        name: (r.name as string) ?? '',
        version: (r.version as string) ?? '',
        resource: r.resource ? anyOf(r.resource as EncodedAny) : undefined,
        aliases: [...((r.aliases as string[]) ?? [])],
      })),
      type_url: (m.type_url as string) ?? '',
      removed_resources: [...((m.removed_resources as string[]) ?? [])],
      nonce: (m.nonce as string) ?? '',
      control_plane: controlPlaneOf(m.control_plane),
    };
  };
}

function anyOf(a: EncodedAny): EncodedAny {
  return { type_url: a.type_url ?? '', value: a.value ?? new Uint8Array() };
}

function statusOf(s: unknown): RpcStatus | undefined {
  if (!s) return undefined;
  const o = s as Record<string, unknown>;
  return { code: (o.code as number) ?? 0, message: (o.message as string) ?? '' };
}

function controlPlaneOf(c: unknown): { identifier: string } | undefined {
  if (!c) return undefined;
  return { identifier: ((c as Record<string, unknown>).identifier as string) ?? '' };
}

let sharedCodec: Codec | undefined;
export function discoveryCodec(): Codec {
  sharedCodec ??= new Codec(envoyProtos());
  return sharedCodec;
}
export type { Codec as DiscoveryCodec };

export type StreamKind = 'sotw' | 'delta';

/** One bidirectional discovery method: its path and which protocol variant it speaks. */
export interface DiscoveryMethod {
  /** `/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources` */
  path: string;
  /** Method name inside its service (`StreamListeners`). */
  name: string;
  kind: StreamKind;
  /** The resource type a per-type service serves; undefined for ADS. */
  typeUrl: string | undefined;
}

export interface DiscoveryService {
  serviceName: string;
  typeUrl: string | undefined;
  methods: DiscoveryMethod[];
}

function serviceMethods(
  protos: EnvoyProtos,
  serviceName: string,
  typeUrl: string | undefined,
): DiscoveryService {
  // Loading the service's package is done by looking up any type in it.
  const pkg = serviceName.slice(0, serviceName.lastIndexOf('.'));
  protos.lookupType(`${PKG}.DiscoveryRequest`);
  for (const dummy of ['AdsDummy', 'LdsDummy', 'RdsDummy', 'CdsDummy', 'EdsDummy', 'SdsDummy'])
    if (protos.lookupType(`${pkg}.${dummy}`)) break;
  const svc = protos.root.lookup(serviceName);
  if (!(svc instanceof protobuf.Service)) throw new Error(`service ${serviceName} is not in the protos`);
  const methods: DiscoveryMethod[] = [];
  for (const m of svc.methodsArray) {
    if (!m.requestStream || !m.responseStream) continue; // Fetch* (REST-style) is not served
    const kind: StreamKind = m.requestType.endsWith('DeltaDiscoveryRequest') ? 'delta' : 'sotw';
    methods.push({ path: `/${serviceName}/${m.name}`, name: m.name, kind, typeUrl });
  }
  return { serviceName, typeUrl, methods };
}

let services: DiscoveryService[] | undefined;
/** ADS first, then the per-type services. */
export function discoveryServices(): DiscoveryService[] {
  if (!services) {
    const protos = envoyProtos();
    services = [serviceMethods(protos, ADS_SERVICE, undefined)];
    for (const [typeUrl, name] of PER_TYPE_SERVICES) services.push(serviceMethods(protos, name, typeUrl));
  }
  return services;
}

export function findMethod(kind: StreamKind, typeUrl: string | undefined): DiscoveryMethod {
  for (const s of discoveryServices()) {
    if (s.typeUrl !== typeUrl) continue;
    const m = s.methods.find((x) => x.kind === kind);
    if (m) return m;
  }
  throw new Error(`no ${kind} discovery method for ${typeUrl ?? 'ADS'}`);
}

/** A grpc-js service definition for one discovery service, with Herald's codecs. */
export function grpcServiceDefinition(service: DiscoveryService): grpc.ServiceDefinition {
  const c = discoveryCodec();
  const def: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const m of service.methods) {
    const sotw = m.kind === 'sotw';
    def[m.name] = {
      path: m.path,
      requestStream: true,
      responseStream: true,
      requestSerialize: (sotw ? c.encodeRequest : c.encodeDeltaRequest) as (v: unknown) => Buffer,
      requestDeserialize: sotw ? c.decodeRequest : c.decodeDeltaRequest,
      responseSerialize: (sotw ? c.encodeResponse : c.encodeDeltaResponse) as (v: unknown) => Buffer,
      responseDeserialize: sotw ? c.decodeResponse : c.decodeDeltaResponse,
    };
  }
  return def as grpc.ServiceDefinition;
}
