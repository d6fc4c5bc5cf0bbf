"""The CRM store: customers, phones, products, orders, invoices, calls and their timeline.

Never imports ``ivr``: the service wires it in through ``ivr.app``.
"""
