// The original system's schema, unchanged, mapped with defineStockSchema: no table is renamed or added
// (only stockcast's own outbox and projection table). PGlite by default, PostgreSQL with DATABASE_URL.
import { fromPGlite, fromPg, sqlChangeCapture, sqlReader, sqlStore } from '@stockcast/sql'
import { createStockCache, defineStockSchema } from 'stockcast'

export const legacySchema = defineStockSchema({
  // MovimentacaoEstoque: signed movements; the balance is their sum (inactive rows excluded).
  onHand: [
    { table: 'movimentacao_estoque', product: 'cod_produto', quantity: 'qtd_movimentacao', where: 'ativo = true' },
  ],
  // ProgramacaoProducao: production planned for a day.
  supply: [
    { table: 'programacao_producao', product: 'cod_produto', quantity: 'qtd_programada', date: 'data_programacao' },
  ],
  demand: [
    // CarteiraPrincipal: the order book, until a picking batch takes the line.
    {
      table: 'carteira_principal',
      product: 'cod_produto',
      quantity: 'qtd_saldo_produto_pedido',
      date: 'expedicao',
      where: 'separacao_lote_id IS NULL',
    },
    // PreSeparacaoItem: pre-pickings with the user's edited date and quantity, while CRIADO or RECOMPOSTO.
    {
      table: 'pre_separacao_item',
      product: 'cod_produto',
      quantity: 'qtd_selecionada_usuario',
      date: 'data_expedicao_editada',
      where: "status IN ('CRIADO','RECOMPOSTO')",
    },
    // Separacao: picking lines; they count while their order (Pedido, via separacao_lote_id) is open or quoted.
    {
      table: 'separacao',
      product: 'cod_produto',
      quantity: 'qtd_saldo',
      date: 'expedicao',
      where:
        "EXISTS (SELECT 1 FROM pedidos p WHERE p.separacao_lote_id = separacao.separacao_lote_id AND p.status IN ('ABERTO','COTADO'))",
    },
  ],
  // A Pedido status change moves its picking lines in or out of demand.
  related: [
    { table: 'pedidos', products: 'SELECT cod_produto FROM separacao WHERE separacao_lote_id = :separacao_lote_id' },
  ],
})

const DDL = `
CREATE TABLE movimentacao_estoque (id serial PRIMARY KEY, cod_produto varchar(50) NOT NULL, qtd_movimentacao numeric(15,3) NOT NULL,
  tipo_movimentacao varchar(20), ativo boolean NOT NULL DEFAULT true, criado_em timestamp DEFAULT now());
CREATE TABLE programacao_producao (id serial PRIMARY KEY, cod_produto varchar(50) NOT NULL, data_programacao date NOT NULL,
  qtd_programada numeric(15,3) NOT NULL);
CREATE TABLE carteira_principal (id serial PRIMARY KEY, num_pedido varchar(30), cod_produto varchar(50) NOT NULL,
  qtd_saldo_produto_pedido numeric(15,3) NOT NULL, expedicao date NOT NULL, separacao_lote_id varchar(50));
CREATE TABLE pre_separacao_item (id serial PRIMARY KEY, num_pedido varchar(30), cod_produto varchar(50) NOT NULL,
  qtd_selecionada_usuario numeric(15,3) NOT NULL, data_expedicao_editada date NOT NULL, status varchar(20) NOT NULL);
CREATE TABLE pedidos (id serial PRIMARY KEY, num_pedido varchar(30), separacao_lote_id varchar(50), status varchar(20) NOT NULL);
CREATE TABLE separacao (id serial PRIMARY KEY, separacao_lote_id varchar(50) NOT NULL, num_pedido varchar(30),
  cod_produto varchar(50) NOT NULL, qtd_saldo numeric(15,3) NOT NULL, expedicao date NOT NULL);
`
const TABLES = [
  'separacao',
  'pedidos',
  'pre_separacao_item',
  'carteira_principal',
  'programacao_producao',
  'movimentacao_estoque',
]

async function main() {
  let db
  let close
  if (process.env.DATABASE_URL) {
    const { default: pg } = await import('pg')
    // A schema of its own: the example drops and recreates these tables there, never in your public schema.
    const admin = new pg.Client({ connectionString: process.env.DATABASE_URL })
    await admin.connect()
    await admin.query('CREATE SCHEMA IF NOT EXISTS stockcast_legacy_example')
    await admin.end()
    // The session's TimeZone is the cache's: `current_date` (used to seed) and the cache's D0 are the same day.
    const pool = new pg.Pool({
      connectionString: process.env.DATABASE_URL,
      options: '-c search_path=stockcast_legacy_example -c TimeZone=America/Sao_Paulo',
    })
    db = fromPg(pool)
    close = () => pool.end()
  } else {
    const { PGlite } = await import('@electric-sql/pglite')
    const pglite = new PGlite()
    db = fromPGlite(pglite)
    close = () => pglite.close()
    // One session: the cache's time zone, so `current_date` (used to seed) is the cache's D0.
    await db.execute("SET TIME ZONE 'America/Sao_Paulo'")
  }
  const capture = sqlChangeCapture(db, legacySchema, { prefix: 'legado' })
  await capture.uninstall().catch(() => {})
  for (const t of TABLES) await db.execute(`DROP TABLE IF EXISTS ${t}`)
  for (const s of DDL.split(';').filter((x) => x.trim())) await db.execute(s)

  const P = '4310152'
  await db.execute(
    `INSERT INTO movimentacao_estoque (cod_produto, qtd_movimentacao, tipo_movimentacao) VALUES
    ($1, 500, 'ENTRADA'), ($1, -120, 'SAIDA'), ($1, 999, 'AJUSTE')`,
    [P],
  )
  await db.execute(`UPDATE movimentacao_estoque SET ativo = false WHERE tipo_movimentacao = 'AJUSTE'`)
  await db.execute(
    `INSERT INTO programacao_producao (cod_produto, data_programacao, qtd_programada) VALUES ($1, current_date + 3, 200)`,
    [P],
  )
  await db.execute(
    `INSERT INTO carteira_principal (num_pedido, cod_produto, qtd_saldo_produto_pedido, expedicao, separacao_lote_id) VALUES
    ('VCD1', $1, 150, current_date + 1, NULL), ('VCD2', $1, 80, current_date + 2, 'LOTE-9')`,
    [P],
  )
  await db.execute(
    `INSERT INTO pre_separacao_item (num_pedido, cod_produto, qtd_selecionada_usuario, data_expedicao_editada, status) VALUES
    ('VCD3', $1, 100, current_date + 2, 'CRIADO'), ('VCD4', $1, 60, current_date + 2, 'ENVIADO')`,
    [P],
  )
  await db.execute(`INSERT INTO pedidos (num_pedido, separacao_lote_id, status) VALUES ('VCD2', 'LOTE-9', 'ABERTO')`)
  await db.execute(
    `INSERT INTO separacao (separacao_lote_id, num_pedido, cod_produto, qtd_saldo, expedicao) VALUES ('LOTE-9', 'VCD2', $1, 80, current_date + 2)`,
    [P],
  )

  await capture.install()
  const store = sqlStore(db, { table: 'legado_projecao' })
  await store.install()
  // The rows above were written before the triggers existed, so no mark covers them: drop whatever an earlier run
  // left in the projection table (a real app runs cache.rebuildAll() after a first install).
  await store.clear()
  const cache = createStockCache({
    schema: legacySchema,
    reader: sqlReader(db, legacySchema),
    store,
    pendingMarks: capture,
    timeZone: 'America/Sao_Paulo',
  })
  const listener = await capture.listen(cache)

  const line = (p) =>
    `stock today ${p.stockToday}, D1 ${p.days[1].closing}, D2 ${p.days[2].closing}, D3 ${p.days[3].closing}, 7-day min ${p.minClosing7d}, stock-out ${p.firstStockoutDate ?? '-'}, ${p.status}`
  const before = await cache.get(P)
  console.log(`${P}: ${line(before)}`)
  // 500 - 120 = 380 on hand; D1 -150 (order book); D2 -100 (pre-picking CRIADO) -80 (picking of an open order); D3 +200.
  await db.execute(`UPDATE pedidos SET status = 'FATURADO' WHERE separacao_lote_id = 'LOTE-9'`)
  const after = await cache.get(P, { consistency: 'strong' })
  console.log(`after Pedido LOTE-9 is invoiced (its picking line leaves demand): ${line(after)}`)
  const report = await cache.validate()
  console.log(`validate: ${report.checked} checked, ${report.mismatches.length} mismatches`)
  const ok = before.days[2].closing === 50 && after.days[2].closing === 130 && report.mismatches.length === 0
  console.log(ok ? 'legacy schema: OK' : 'legacy schema: UNEXPECTED NUMBERS')
  if (!ok) process.exitCode = 1
  await listener.stop()
  await cache.close()
  await close()
}

await main()
