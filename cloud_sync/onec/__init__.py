"""The 1C exchange: CommerceML parsing and import, the exchange-with-site endpoint, orders to 1C and
their statuses back, the commission agent report for 1C, print forms, and through 1C's standard OData
interface (`odata`) the commission document and the items made from cards that match no 1C item
(`items_out`)."""
