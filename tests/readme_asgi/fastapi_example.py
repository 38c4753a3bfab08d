import os

from fastapi import FastAPI, Request

from dynamo_sessions import SessionConfig
from dynamo_sessions.asgi import SessionMiddleware, load_session

app = FastAPI()
app.add_middleware(
    SessionMiddleware,
    config=SessionConfig(table_name=os.environ.get("SESSIONS_TABLE", "sessions"),
                         locking="optimistic"),
)


@app.post("/cart/{item}")
async def add_to_cart(item: str, request: Request) -> dict[str, list[str]]:
    session = await load_session(request)  # read it without blocking the event loop
    cart = [*session.get("cart", []), item]
    session["cart"] = cart  # saved once, before the response starts
    return {"cart": cart}


@app.post("/login")
async def login(request: Request) -> dict[str, int]:
    session = await load_session(request)
    session.regenerate()  # a new session id on login; the cart stays
    session["user"] = (await request.json())["user"]
    return {"logins": session.increment("logins")}


@app.post("/logout")
async def logout(request: Request) -> dict[str, str]:
    request.session.destroy()  # works too: a first plain use reads it, blocking the loop once
    return {}
