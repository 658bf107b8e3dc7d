"""Judge many programs against tests: verdicts streamed as they complete (python, javascript, C++)."""

import corral

tests = [{"stdin": f"{a} {b}\n", "expected": f"{a + b}\n"} for a, b in [(1, 2), (40, 2), (7, -7)]]
items = [
    {"code": "a, b = map(int, input().split()); print(a + b)", "tests": tests},
    {"code": "a, b = map(int, input().split()); print(a - b)", "tests": tests},           # wrong answer
    {"code": "const [a, b] = require('fs').readFileSync(0, 'utf8').split(' ').map(Number); console.log(a + b)",
     "language": "javascript", "tests": tests},
    {"code": "#include <iostream>\nint main() { long a, b; std::cin >> a >> b; std::cout << a + b << '\\n'; }",
     "language": "cpp", "tests": tests},
    {"code": "int main() { return undefined_name; }", "language": "cpp", "tests": tests},   # compile error
    {"code": "while True: pass", "timeout": 1, "tests": tests[:1]},                          # time limit
    {"code": "print(0.1 + 0.2)", "tests": [{"expected": "0.3"}], "compare": "float"},
    {"code": "print(1)", "language": "fortran"},                                            # invalid item
]

for result in corral.run_many(items, concurrency=4):
    print(result.index, result.verdict, [test.verdict for test in result.tests], result.error or "")
    if result.compile is not None and not result.compile.ok:
        print("   ", result.compile.stderr.strip().splitlines()[0])
