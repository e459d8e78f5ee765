// The single public entry of stockcast: every export is named here (types apart from values).

export type { MemoryStoreOptions } from './cache/memory-store.js'
export { memoryStore } from './cache/memory-store.js'
export type { HistogramSnapshot, MetricsSnapshot } from './cache/metrics.js'
export type {
  ListOrder,
  ReadOptions,
  SourceInputs,
  SourceReader,
  StockProjection,
  Store,
  StoreCapabilities,
  StoreEntry,
  StoreListQuery,
} from './cache/types.js'
export type {
  Cache,
  CachedOptions,
  CacheEvents,
  CacheMetrics,
  CacheOptions,
  CacheResult,
  CacheTier,
  EntryOptions,
  InvalidateOptions,
  InvalidateTarget,
  WarmOptions,
  WarmReport,
  WarmTarget,
} from './cached/index.js'
export { createCache } from './cached/index.js'
export type { ErrorContext } from './errors.js'
export {
  ClosedError,
  ConfigError,
  errors,
  InvalidInputError,
  LockTimeoutError,
  MismatchError,
  ReadTimeoutError,
  SourceUnavailableError,
  StockcastError,
  StoreUnavailableError,
  WaitTimeoutError,
} from './errors.js'
export { invalidationMessageOf } from './invalidation/contracts.js'
export type { AfterCommitTransaction } from './invalidation/scope.js'
export { TransactionScope } from './invalidation/scope.js'
export type { HttpAction, HttpHandlerOptions, StockcastHttpHandler, StockSummary } from './ops/http.js'
export { createHttpHandler } from './ops/http.js'
export type {
  DirtySweepJob,
  JobName,
  JobStatus,
  Jobs,
  JobsOptions,
  PrecisionJob,
  RefreshStaleJob,
  RolloverJob,
  WarmJob,
} from './ops/jobs.js'
export { startJobs } from './ops/jobs.js'
export type {
  PromClientLike,
  PrometheusOptions,
  PrometheusSource,
  PromRegistryLike,
  RegisterPrometheusOptions,
} from './ops/prometheus.js'
export { PROMETHEUS_CONTENT_TYPE, prometheusText, registerPrometheus } from './ops/prometheus.js'
export type { DeliveredState, MemoryWebhookStateOptions, WebhookStateStore } from './ops/webhook-state.js'
export { fileWebhookState, memoryWebhookState } from './ops/webhook-state.js'
export type {
  WebhookDelivered,
  WebhookDelivery,
  WebhookDeliveryOptions,
  WebhookError,
  WebhookFailed,
  WebhookFetch,
  WebhookPayload,
  WebhookStatus,
} from './ops/webhooks.js'
export { createWebhookDelivery } from './ops/webhooks.js'
export type {
  Availability,
  AvailabilityOptions,
  AvailabilityRule,
  DateString,
  DecimalInput,
  FlowRow,
  LaterFlow,
  MovementRow,
  Projection,
  ProjectionDay,
  ProjectionInputs,
  ProjectionOptions,
  StockStatus,
} from './projection/index.js'
export { availabilityDate, projectStock, todayIn } from './projection/index.js'
export type { CaptureProductColumn, CaptureRelated, CaptureTable } from './stock/capture-plan.js'
export { capturePlan } from './stock/capture-plan.js'
export type { ValueCodec } from './stock/codec.js'
export { projectionCodec } from './stock/codec.js'
export { KEY_SEPARATOR, keyOf, parseKey } from './stock/keys.js'
export type { ListPage, ListQuery } from './stock/list.js'
export type {
  MemorySource,
  MemorySourceData,
  MemorySourceOptions,
  MemoryTransaction,
  Row,
} from './stock/memory-source.js'
export { memorySource } from './stock/memory-source.js'
export type {
  BusState,
  Clock,
  DistributedLock,
  InvalidationBus,
  InvalidationMessage,
  MarkSource,
  MemoryTierOptions,
  PendingMarks,
  StockCacheOptions,
  Timers,
} from './stock/options.js'
export type {
  RelatedDeclaration,
  RelatedSource,
  SourceDeclaration,
  SourceKind,
  StockSchema,
  StockSchemaDeclaration,
  StockSource,
} from './stock/schema.js'
export { defineStockSchema, isSafeIdentifier } from './stock/schema.js'
export type {
  CachedEntry,
  EntriesOptions,
  ErrorEvent,
  FlushOptions,
  FlushReport,
  GetManyOptions,
  GetOptions,
  MarkOptions,
  MarkReason,
  RebuildProgress,
  RebuildReport,
  RolloverReport,
  StockCache,
  StockCacheEvents,
  StockCacheStatus,
  StockoutEvent,
  TransitionEvent,
  TransitionKind,
  UpdatedEvent,
  ValidateOptions,
  ValidationMismatch,
  ValidationReport,
} from './stock/stock-cache.js'
export { createStockCache, firstDifference } from './stock/stock-cache.js'
export { backoffDelay } from './util/backoff.js'
export { isWellFormedText } from './util/text.js'
export { defaultTimers, every, withTimeout } from './util/timers.js'
