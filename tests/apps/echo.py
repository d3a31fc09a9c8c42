"""A test agency app: it echoes what it received, byte for byte, counts what it applied, and can
be told to lie or stall, so the tests can prove what the gateways send and what they retry.

    GET  /healthz            200 always (even when lying: that is the point)
    GET  /canary             200 "ok", or 500 when told to lie
    any  /apply              counts one application, then answers (after ``stall`` seconds when stalling)
    GET  /applied            {"applied": n}
    POST /mode               {"lie": bool, "stall": seconds}: how it behaves from now on
    anything else            200 JSON: method, raw path, headers (as a list), body (base64), region

Run: ``python echo.py --port P --region R``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64

from aiohttp import web

STATE = {"applied": 0, "lie": False, "stall": 0.0}


async def health(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def canary(_: web.Request) -> web.Response:
    return web.Response(status=500, text="broken") if STATE["lie"] else web.Response(text="ok")


async def apply(_: web.Request) -> web.Response:
    STATE["applied"] = int(STATE["applied"]) + 1
    if STATE["stall"]:
        await asyncio.sleep(float(STATE["stall"]))
    return web.json_response({"applied": STATE["applied"]}, status=201)


async def applied(_: web.Request) -> web.Response:
    return web.json_response({"applied": STATE["applied"]})


async def mode(request: web.Request) -> web.Response:
    wanted = await request.json()
    STATE["lie"] = bool(wanted.get("lie", False))
    STATE["stall"] = float(wanted.get("stall", 0.0))
    return web.json_response(STATE)


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response({"method": request.method, "raw_path": request.raw_path,
                              "headers": [[k, v] for k, v in request.headers.items()],
                              "body": base64.b64encode(body).decode(), "region": request.app["region"]},
                             headers={"X-Echo": "1", "X-Paydar-Served-By": "forged"})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--region", required=True)
    args = parser.parse_args()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app["region"] = args.region
    app.router.add_get("/healthz", health)
    app.router.add_get("/canary", canary)
    app.router.add_route("*", "/apply", apply)
    app.router.add_get("/applied", applied)
    app.router.add_post("/mode", mode)
    app.router.add_route("*", "/{tail:.*}", echo)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
