import { createStockCache, memorySource } from 'stockcast'
import { changeCaptureSchema } from 'stockcast/conformance'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { type PrismaTransactionRef, prismaTransactionOf, Transactions } from '../src/transactions.js'
import { pgliteTestDb, type TestDb } from './helpers/db.js'

// The canary of the one Prisma internal the transaction tracking reads (`__internalParams.transaction` of a query
// extension call, Prisma 7.10). If a Prisma upgrade moves it, this fails here, loudly, rather than the extension
// silently falling back to marking at once *and* after commit (correct, but rollbacks then over-mark).

let db: TestDb
beforeAll(async () => {
  db = await pgliteTestDb()
})
afterAll(async () => {
  await db?.close()
})

it('Prisma still tells a query extension which transaction an operation runs in', async () => {
  const seen: Array<[string, PrismaTransactionRef | null | undefined]> = []
  const prisma = db.prisma.$extends({
    query: {
      $allOperations(params) {
        seen.push([params.operation, prismaTransactionOf(params)])
        return params.query(params.args)
      },
    },
  })
  await prisma.auditLog.create({ data: { message: 'outside' } })
  await prisma.$transaction(async (tx) => {
    await tx.auditLog.create({ data: { message: 'interactive' } })
  })
  await prisma.$transaction([prisma.auditLog.count(), prisma.auditLog.findMany()])

  const kinds = seen.map(([op, ref]) => [op, ref === null ? 'none' : ref === undefined ? 'UNREADABLE' : ref.kind])
  if (kinds.some(([, k]) => k === 'UNREADABLE')) {
    throw new Error(
      'Prisma no longer passes __internalParams.transaction to query extensions: update prismaTransactionOf() in ' +
        `src/transactions.ts for this Prisma version (seen: ${JSON.stringify(kinds)})`,
    )
  }
  expect(kinds).toEqual([
    ['create', 'none'],
    ['create', 'itx'],
    ['count', 'batch'],
    ['findMany', 'batch'],
  ])
  const ids = seen.slice(1).map(([, ref]) => ref!.id)
  expect(ids[1]).toBe(ids[2]) // one batch, one id
  expect(ids[0]).not.toBe(ids[1])
})

it('reads nothing from params without the internal field (the fallback)', () => {
  expect(prismaTransactionOf({ model: 'X', operation: 'create', args: {} })).toBeUndefined()
  expect(prismaTransactionOf({ __internalParams: {} })).toBeNull()
  expect(prismaTransactionOf({ __internalParams: { transaction: { kind: 'itx', id: 'a' } } })).toEqual({
    kind: 'itx',
    id: 'a',
  })
})

it('places operations: inside the transaction that ran them, at once outside, both when Prisma does not say', async () => {
  const cache = createStockCache({ schema: changeCaptureSchema, reader: memorySource(changeCaptureSchema).reader })
  const t = new Transactions(cache, () => {})
  const ref = (kind: 'itx' | 'batch', id: string | number) => ({ __internalParams: { transaction: { kind, id } } })
  const seen: Array<[string, unknown]> = []
  const original = async function (this: unknown, arg: unknown) {
    const place = (label: string, params: unknown) => {
      const p = t.place(params)
      seen.push([
        label,
        p.ctx === undefined ? (p.now ? 'now' : '?') : `${p.ctx.kind}:${String(p.ctx.prismaId)}${p.now ? '+now' : ''}`,
      ])
    }
    if (typeof arg === 'function') await (arg as (tx: unknown) => Promise<void>)({ place })
    else place('batch op', ref('batch', 7))
  }
  const $transaction = t.wrap(original, { $extends: () => {} })
  place0(t, seen)
  await $transaction.call({ $extends: () => {} }, async ({ place }: { place: (l: string, p: unknown) => void }) => {
    place('itx op', ref('itx', 'A'))
    place('base client in the callback', { __internalParams: {} })
    place('no internal field', {})
    place('an unknown transaction', ref('itx', 'Z'))
  })
  await $transaction.call({ $extends: () => {} }, [])
  expect(seen).toEqual([
    ['outside', 'now'],
    ['itx op', 'itx:A'],
    ['base client in the callback', 'now'],
    ['no internal field', 'itx:A+now'],
    ['an unknown transaction', 'now'],
    ['batch op', 'batch:7'],
  ])
  expect(t.unknownTransactions).toBe(1)
  await cache.close()
})

function place0(t: Transactions, seen: Array<[string, unknown]>) {
  const p = t.place({ __internalParams: {} })
  seen.push(['outside', p.ctx === undefined && p.now ? 'now' : '?'])
}
