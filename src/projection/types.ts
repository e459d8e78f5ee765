/** A decimal quantity as a string (`"12.500"`, `"-3"`) or a number. Computed exactly at `scale` decimal places. */
export type DecimalInput = string | number

/** `YYYY-MM-DD`, a calendar day (no time, no zone). */
export type DateString = string

/** A dated flow: supply adds on its date, demand subtracts. */
export interface FlowRow {
  /** The day it happens. A day before D0 (overdue, still open) counts on D0. */
  date: DateString
  quantity: DecimalInput
  /** The schema source the row came from (used by selective recompute and reports). */
  source?: string
  /** Drafts, quotations: kept out of the firm series, counted in `closingWithPending`. */
  pending?: boolean
  /** The location (warehouse, site) when the schema names a location column. */
  location?: string | null
}

/** A signed on-hand movement. Without a date, or dated on or before D0, it is part of `stockToday`. */
export interface MovementRow {
  date?: DateString | null
  quantity: DecimalInput
  source?: string
  location?: string | null
}

/** What the calculator needs for one key. */
export interface ProjectionInputs {
  /** The balance today, or the signed movements that make it up (dated movements after D0 apply on their day). */
  onHand: DecimalInput | readonly MovementRow[]
  supply?: readonly FlowRow[]
  demand?: readonly FlowRow[]
}

/** Options of `projectStock`. */
export interface ProjectionOptions {
  /** D0 as `YYYY-MM-DD`. When absent, D0 is today in `timeZone` by `clock`. */
  today?: DateString
  /** Where "now" comes from when `today` is absent. @default Date */
  clock?: { now(): number }
  /** IANA time zone that decides which calendar day is D0. @default 'UTC' */
  timeZone?: string
  /** Number of days D0..D(horizonDays-1). @default 29 */
  horizonDays?: number
  /** Decimal places of exact arithmetic (0..9). @default 3 */
  scale?: number
  /** 7-day minimum below this gives `ATTENTION`. @default 0 */
  safetyStock?: DecimalInput
  /** A stock-out within D0..D(criticalDays) gives `CRITICAL`. @default 7 */
  criticalDays?: number
  /** A closing below this is a stock-out. @default 0 */
  stockoutThreshold?: DecimalInput
}

/** One day of the projection. Quantities are the JS numbers nearest the exact decimals (they print exactly). */
export interface ProjectionDay {
  date: DateString
  opening: number
  /** Net on-hand movements dated on this day (0 on D0: those are in `stockToday`). */
  movements: number
  supply: number
  demand: number
  /** `opening + movements + supply - demand` */
  closing: number
  /** The same series with `pending` rows counted. */
  closingWithPending: number
}

/** Flows dated after the horizon: not in `days`, but used by `availabilityDate`. */
export interface LaterFlow {
  date: DateString
  /** Net firm change on that day (movements + supply - demand). */
  net: number
  /** Net change with pending rows counted. */
  netWithPending: number
}

export type StockStatus = 'OK' | 'ATTENTION' | 'CRITICAL'

/** The projection of one key. Frozen: never mutate it. */
export interface Projection {
  /** D0 */
  today: DateString
  timeZone: string
  horizonDays: number
  scale: number
  /** On-hand balance at D0 (movements dated on or before D0). */
  stockToday: number
  /** Firm supply counted on D0 (includes overdue supply). */
  supplyToday: number
  /** Firm demand counted on D0 (includes overdue demand). */
  demandToday: number
  /** Firm supply dated before D0 and still open (already inside `supplyToday`). */
  overdueSupply: number
  /** Firm demand dated before D0 and still open (already inside `demandToday`). */
  overdueDemand: number
  days: readonly ProjectionDay[]
  /** Lowest closing over D0..D7 (or the whole horizon when shorter). */
  minClosing7d: number
  /** The first day that lowest closing occurs. */
  minClosing7dDate: DateString
  /** First day whose closing is below `stockoutThreshold`, or null. */
  firstStockoutDate: DateString | null
  /** Days before the first stock-out (0 when D0 is short); null when none within the horizon. */
  daysOfCover: number | null
  status: StockStatus
  safetyStock: number
  stockoutThreshold: number
  later: readonly LaterFlow[]
}

export type AvailabilityRule = 'promise' | 'point'

export interface AvailabilityOptions {
  /**
   * `promise`: first day k with min(closing(k..end)) >= qty, so promising never drives a later day negative.
   * `point`: first day with closing(k) >= qty (the original system's rule).
   * @default 'promise'
   */
  rule?: AvailabilityRule
  /** Count pending rows (`closingWithPending`). @default false */
  includePending?: boolean
}

export interface Availability {
  /** The day the quantity can be promised, or null. */
  date: DateString | null
  /** Days after D0 (may exceed the horizon when a later flow makes it available), or null. */
  dayIndex: number | null
  rule: AvailabilityRule
  /** Why `date` is null: the quantity is never reached, or it is reached but later dips below it. */
  reason: null | 'never-reached' | 'not-sustained'
}
