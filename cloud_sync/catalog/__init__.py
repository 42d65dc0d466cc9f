"""The catalog: the 1C nomenclature (items, barcodes, price types, cost), the marketplace cards and the
links between them (by barcode, then article, or by hand), card visibility and card creation.

Modules: `nomenclature` (1C items), `cards` (cards, links, marketplace warehouses, creations), `card_fill`
(a new card filled from a 1C item by the seller's rules per category), `view` (read-only joins of cards
with their items for prices and reports). No module here imports a module of
another room but `stock.ledger` (a link change marks items for the push planner)."""
