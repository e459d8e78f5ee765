// Sequelize models for the example ERP schema (tables and stockcast mapping: ../sql-demo/schema.mjs).
// Attribute names are camelCase; `field` maps them to the snake_case columns the stockcast schema names.
import { DataTypes } from 'sequelize'

export function defineModels(sequelize) {
  const id = { type: DataTypes.BIGINT, primaryKey: true, autoIncrement: true }
  const common = { timestamps: false }
  const StockMovement = sequelize.define(
    'StockMovement',
    {
      id,
      productCode: { type: DataTypes.TEXT, allowNull: false, field: 'product_code' },
      quantity: { type: DataTypes.DECIMAL(15, 3), allowNull: false },
      movedAt: { type: DataTypes.DATE, field: 'moved_at', defaultValue: DataTypes.NOW },
    },
    { ...common, tableName: 'stock_movements' },
  )
  const ProductionSchedule = sequelize.define(
    'ProductionSchedule',
    {
      id,
      productCode: { type: DataTypes.TEXT, allowNull: false, field: 'product_code' },
      plannedQty: { type: DataTypes.DECIMAL(15, 3), allowNull: false, field: 'planned_qty' },
      scheduledFor: { type: DataTypes.DATEONLY, allowNull: false, field: 'scheduled_for' },
    },
    { ...common, tableName: 'production_schedule' },
  )
  const Order = sequelize.define(
    'Order',
    {
      id,
      pickingBatchId: { type: DataTypes.TEXT, field: 'picking_batch_id' },
      status: { type: DataTypes.TEXT, allowNull: false, defaultValue: 'OPEN' },
    },
    { ...common, tableName: 'orders' },
  )
  const OrderLine = sequelize.define(
    'OrderLine',
    {
      id,
      orderId: { type: DataTypes.BIGINT, field: 'order_id' },
      productCode: { type: DataTypes.TEXT, allowNull: false, field: 'product_code' },
      openQty: { type: DataTypes.DECIMAL(15, 3), allowNull: false, field: 'open_qty' },
      shipDate: { type: DataTypes.DATEONLY, allowNull: false, field: 'ship_date' },
      pickingBatchId: { type: DataTypes.TEXT, field: 'picking_batch_id' },
    },
    { ...common, tableName: 'order_lines' },
  )
  const PrePickingItem = sequelize.define(
    'PrePickingItem',
    {
      id,
      productCode: { type: DataTypes.TEXT, allowNull: false, field: 'product_code' },
      selectedQty: { type: DataTypes.DECIMAL(15, 3), allowNull: false, field: 'selected_qty' },
      editedShipDate: { type: DataTypes.DATEONLY, allowNull: false, field: 'edited_ship_date' },
      status: { type: DataTypes.TEXT, allowNull: false },
    },
    { ...common, tableName: 'pre_picking_items' },
  )
  const PickingItem = sequelize.define(
    'PickingItem',
    {
      id,
      pickingBatchId: { type: DataTypes.TEXT, allowNull: false, field: 'picking_batch_id' },
      productCode: { type: DataTypes.TEXT, allowNull: false, field: 'product_code' },
      qty: { type: DataTypes.DECIMAL(15, 3), allowNull: false },
      shipDate: { type: DataTypes.DATEONLY, allowNull: false, field: 'ship_date' },
    },
    { ...common, tableName: 'picking_items' },
  )
  Order.hasMany(OrderLine, { foreignKey: 'orderId', as: 'lines' })
  return { StockMovement, ProductionSchedule, Order, OrderLine, PrePickingItem, PickingItem }
}
