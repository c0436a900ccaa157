# -*- test-case-name: tests.test_webhooks_dispatch,tests.test_webhooks_e2e -*-
"""Webhooks (API.md §6): events out to HTTP servers, and their answers back.

* :mod:`~twisted_spark.webhooks.definition` validates a create request;
* :mod:`~twisted_spark.webhooks.templates` renders Mustache (pystache) against an event;
* :mod:`~twisted_spark.webhooks.outgoing` builds the HTTP request of one delivery;
* :mod:`~twisted_spark.webhooks.policy` decides which target addresses are allowed;
* :mod:`~twisted_spark.webhooks.sender` sends it with treq, DNS resolved and checked once;
* :mod:`~twisted_spark.webhooks.outcome` turns answers into hook-sent/response/error events;
* :mod:`~twisted_spark.webhooks.dispatcher` matches events to hooks, queues, retries, throttles;
* :mod:`~twisted_spark.webhooks.health` counts failures and sleeps per hook.

The hooks themselves are :class:`~twisted_spark.models.Webhook` records kept
by an :class:`~twisted_spark.interfaces.webhooks.IWebhookStore`.
"""
