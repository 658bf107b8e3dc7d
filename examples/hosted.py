"""Hosted sandboxes: create, use, pause, resume and list, locally or against a corral server.

    python examples/hosted.py                               # in process, no server
    corral serve &                                          # or against a server:
    CORRAL_API_KEY=ck_... python examples/hosted.py http://127.0.0.1:8700
"""

from __future__ import annotations

import sys

from corral import Sandbox

server = {"server": sys.argv[1]} if len(sys.argv) > 1 else {}

sandbox = Sandbox.create(template="python", ttl=300, metadata={"example": "hosted"}, **server)
print("created", sandbox.id)
sandbox.run("import json; notes = {'step': 1}")
sandbox.run("open('notes.json', 'w').write(json.dumps(notes))")
sandbox.files.write("data/input.txt", b"hello from the host\n")
print(sandbox.commands.run("ls -R").stdout)

snapshot = sandbox.pause()
print(f"paused into {snapshot.id}: {snapshot.file_count} files, {snapshot.size_bytes} bytes")

resumed = Sandbox.resume(snapshot.id, **server)
print("resumed as", resumed.id)
print(resumed.files.read_text("notes.json"), resumed.files.read_text("data/input.txt"), end="")
print([info.id for info in Sandbox.list(metadata={"example": "hosted"}, **server)])
for event in resumed.events():
    print(f"  {event.kind:10} {event.state.value:9} {event.message}")
resumed.kill()
