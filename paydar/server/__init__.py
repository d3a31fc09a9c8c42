"""What every networked component is built on: the aiohttp foundation, bounded bodies, load shedding, connection caps."""
