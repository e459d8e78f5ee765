// Types of truth.mjs (the checker's own aggregation and fingerprints).
import type { Projection } from 'stockcast'

/** A row image: `[id, ...columns]` in the order of workload.mjs TABLES. */
export type RowImage = Array<string | number | null>
export type TableKey = 'movements' | 'production' | 'order_lines' | 'orders' | 'picking_items'
export type Snapshot = Partial<Record<TableKey, RowImage[]>>
/** One change of a commit: table, old image (null: inserted), new image (null: deleted). */
export type Change = [TableKey, RowImage | null, RowImage | null]

export interface ParsedFingerprint {
  today: string
  stockToday: number
  status: string
  firstStockoutDate: string | null
  closing: number[]
  closingWithPending: number[] | null
}

export function fingerprint(p: Projection): string
export function parseFingerprint(fp: string): ParsedFingerprint
export function describeFingerprint(fp: string): string
export function diffFingerprints(read: string, truth: string): string
export function inputsOf(
  rowsOfProduct: Record<'movements' | 'production' | 'order_lines' | 'picking_items', RowImage[]>,
  statusByBatch: Map<number | null, string>,
): {
  onHand: Array<{ quantity: string }>
  supply: Array<{ date: string; quantity: string }>
  demand: Array<{ date: string; quantity: string }>
}
export function truthProjection(inputs: ReturnType<typeof inputsOf>, today: string): Projection

export class Replay {
  constructor(snapshot: Snapshot)
  /** Replays one commit; returns the products whose truth may have changed. Throws on an image that does not match. */
  apply(changes: Change[]): Set<string>
  statusByBatch(): Map<number, string>
  fingerprintOf(product: string, today: string, statusByBatch?: Map<number, string>, scan?: boolean): string
  dump(): Record<TableKey, RowImage[]>
}
