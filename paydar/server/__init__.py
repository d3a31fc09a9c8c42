"""What every networked component is built on.

The aiohttp foundation, bounded bodies, load shedding and connection caps.
"""
