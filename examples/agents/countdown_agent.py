#!/usr/bin/env python3
"""An external agent for `crucible train rl --env server` (standard library only).

The trainer serves its own policy over the OpenAI API and offers each step's episodes as
sessions. This agent takes episodes (POST /v1/rl/episodes), asks the model for a Countdown-lite
answer in the episode's session (the X-Session-Id header), scores it with its own rules and
posts the reward (POST /v1/rl/reward). Any agent in any language can do the same; the trainer
never sees how the reward was computed. docs/SERVING.md, "RL endpoints".

    crucible train rl --config examples/agents/rl_countdown_agent.yaml
        (starts this agent itself: env.server.agent), or, with env.server.agent: "",
    python3 examples/agents/countdown_agent.py --url http://127.0.0.1:PORT/v1

Countdown-lite: the prompt "2 5 7>17:" asks for an expression over + - * that uses each of the
three numbers exactly once and equals the target; the model answers on one line.
"""
import argparse
import json
import os
import re
import sys
import threading
import urllib.error
import urllib.request


def post(url, body, headers=None, timeout=300):
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST")
    request.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{url}: HTTP {e.code}: {e.read().decode(errors='replace')}") from None


# Integers joined by + - *, nothing else (no spaces, no parentheses): the built-in verifier's
# rule (tests/rl_agent_server_test.cpp checks that the two agree).
EXPRESSION = re.compile(r"\d+([-+*]\d+)*")


def evaluate(expression):
    """The value of integers joined by + - * (multiplication first), exactly."""
    tokens = re.findall(r"\d+|[-+*]", expression)
    total, sign, product = 0, 1, int(tokens[0])
    for op, number in zip(tokens[1::2], tokens[2::2]):
        if op == "*":
            product *= int(number)
        else:
            total += sign * product
            sign, product = (1 if op == "+" else -1), int(number)
    return total + sign * product


def countdown_reward(prompt, completion):
    """1.0 when the completion's first line uses each number once and reaches the target."""
    match = re.fullmatch(r"\s*([\d ]+)>(\d+):\s*", prompt)
    if match is None:
        raise ValueError(f"not a Countdown-lite prompt: {prompt!r}")
    numbers = sorted(int(n) for n in match.group(1).split())
    target = int(match.group(2))
    answer = completion.split("\n", 1)[0]
    if EXPRESSION.fullmatch(answer) is None:
        return 0.0
    if sorted(int(n) for n in re.findall(r"\d+", answer)) != numbers:
        return 0.0
    return 1.0 if evaluate(answer) == target else 0.0


def run_episode(base, episode, max_tokens):
    item = episode["item"]
    answer = post(base + "/completions",
                  {"prompt": item["prompt"], "max_tokens": max_tokens, "temperature": 1.0},
                  headers={"X-Session-Id": episode["session"]})
    reward = countdown_reward(item["prompt"], answer["choices"][0]["text"])
    post(base + "/rl/reward",
         {"session": episode["session"], "reward": reward, "correct": reward == 1.0})
    return reward


def worker(base, max_tokens, totals, lock):
    while True:
        episode = post(base + "/rl/episodes", {"wait_s": 10})
        if episode["session"] is None:
            if episode["done"]:
                return
            continue
        try:
            reward = run_episode(base, episode, max_tokens)
        except Exception as e:  # the episode is excluded, with the reason, never scored 0
            post(base + "/rl/reward", {"session": episode["session"], "error": str(e)})
            continue
        with lock:
            totals[episode["policy_version"]] = [a + b for a, b in
                                                 zip(totals.get(episode["policy_version"], [0, 0]),
                                                     [reward, 1])]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("CRUCIBLE_RL_URL", ""),
                        help="the trainer's server, http://HOST:PORT/v1 (default: $CRUCIBLE_RL_URL)")
    parser.add_argument("--workers", type=int, default=16, help="episodes run at once")
    parser.add_argument("--max-tokens", type=int, default=16, help="tokens per answer at most")
    args = parser.parse_args()
    if not args.url:
        sys.exit("countdown_agent: give --url or set CRUCIBLE_RL_URL")
    totals, lock = {}, threading.Lock()
    threads = [threading.Thread(target=worker, args=(args.url.rstrip("/"), args.max_tokens,
                                                      totals, lock))
               for _ in range(args.workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for version in sorted(totals):
        reward, n = totals[version]
        print(f"policy version {version}: {n} episodes, mean reward {reward / n:.3f}")


if __name__ == "__main__":
    main()
