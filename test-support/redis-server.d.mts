// Types of redis-server.mjs.
export interface OwnRedisServer {
  readonly port: number
  readonly url: string
  /** Start it again after stop() (empty: it keeps nothing on disk). */
  start(): Promise<void>
  /** SIGKILL, and wait until it is gone. */
  stop(): Promise<void>
  /** Stop it and remove its directory. */
  close(): Promise<void>
}
export function freePort(): Promise<number>
export function ownRedis(extra?: readonly string[]): Promise<OwnRedisServer>
