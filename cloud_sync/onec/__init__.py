"""The 1C exchange: CommerceML parsing and import, the exchange-with-site endpoint, orders to 1C and
their statuses back, the commission agent report for 1C, print forms."""
