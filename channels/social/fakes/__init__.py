"""Fakes of the VK, OK and Telegram Bot APIs: real aiohttp servers on loopback that follow
the platforms' documented wire formats, so adapters are tested with the real client
libraries pointed at them. Shipped with the package for integrators' tests."""
