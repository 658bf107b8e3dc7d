"""SandboxFusion's own client against `corral serve`.

    corral serve &                                        # prints an API key the first time
    corral keys create --name sf --scope sandbox-fusion   # a key good for /run_code only
    SANDBOX_FUSION_ENDPOINT=http://127.0.0.1:8700/sandbox-fusion/<that key> python examples/sandbox_fusion_client.py
"""

import base64

from sandbox_fusion import RunCodeRequest, run_code

answer = run_code(RunCodeRequest(code="import sys; print(sys.stdin.read()[::-1])", language="python", stdin="abc"))
print(answer.status, answer.run_result.stdout)

answer = run_code(RunCodeRequest(
    code="#include <fstream>\n#include <iostream>\nint main() { std::ifstream in(\"n.txt\"); int n; in >> n;"
         " std::ofstream(\"out.txt\") << n * n; std::cout << \"done\\n\"; }",
    language="cpp", files={"n.txt": base64.b64encode(b"12").decode()}, fetch_files=["out.txt"]))
print(answer.status, answer.compile_result.status, answer.run_result.stdout, base64.b64decode(answer.files["out.txt"]))

answer = run_code(RunCodeRequest(code="int main() { return nope; }", language="cpp"))
print(answer.status, answer.run_result, answer.compile_result.stderr.splitlines()[0])
