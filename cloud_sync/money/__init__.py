"""Money: price lists and price documents (preview as a diff, guards, apply), scheduled price rules,
price uploads from spreadsheets, and the commission agent report and stock reports."""
