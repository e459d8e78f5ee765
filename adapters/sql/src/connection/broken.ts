/**
 * True for an error that says the connection itself failed (terminated, closed, refused, lost): such a connection
 * must not go back into the pool. The lock drops a session with an error of this kind too.
 */
export function isConnectionError(e: unknown): e is Error {
  return e instanceof Error && /terminat|connection|ECONN|closed/i.test(e.message)
}
