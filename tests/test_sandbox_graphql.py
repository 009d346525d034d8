"""The sandbox GitHub's GraphQL endpoint, driven through PyGithub's `requester.graphql_query`."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import github
import pytest

from asm.github import HISTORY_QUERY
from asm.sandbox.github_graphql_syntax import (
    EnumValue,
    GraphQLSyntaxError,
    Variable,
    parse,
)
from asm.sandbox.github_server import GitHubServer
from asm.sandbox.github_state import GitHubState

TOKEN = "sandbox-token"
REPO = "acme/shop"

OWNER, NAME = REPO.split("/")

# The query asm sends to learn who wrote, labelled and renamed an issue, and when.
ISSUE_HISTORY = HISTORY_QUERY


@pytest.fixture
def state(tmp_path: Path) -> GitHubState:
    state = GitHubState(tmp_path / "github", TOKEN)
    state.create_repo(REPO, {"README.md": "# shop\n"})
    return state


@pytest.fixture
def server(state: GitHubState):
    with GitHubServer(state) as server:
        yield server


def connect(server: GitHubServer, token: str = TOKEN) -> github.Github:
    return github.Github(auth=github.Auth.Token(token), base_url=server.url, retry=None,
                         seconds_between_requests=0, seconds_between_writes=0)


@pytest.fixture
def gh(server: GitHubServer):
    client = connect(server)
    yield client
    client.close()


def query(gh: github.Github, text: str, **variables) -> dict:
    """The `data` of a query that must succeed."""
    _, body = gh.requester.graphql_query(text, variables)
    assert "errors" not in body
    return body["data"]


def refused(gh: github.Github, text: str, **variables) -> list[dict]:
    """The `errors` of a query PyGithub must refuse."""
    with pytest.raises(github.GithubException) as failure:
        gh.requester.graphql_query(text, variables)
    return failure.value.data["errors"]


def post(server: GitHubServer, body: object, token: str = TOKEN) -> tuple[int, dict]:
    """A plain POST /graphql, to see the status and body exactly as sent."""
    request = urllib.request.Request(server.url + "/graphql", data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": f"bearer {token}"})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def issue_query(fields: str, number: int = 1) -> str:
    return f'{{ repository(owner: "{OWNER}", name: "{NAME}") {{ issue(number: {number}) {{ {fields} }} }} }}'


# -- the query asm sends -----------------------------------------------------------------------


def test_issue_history_shows_who_labelled_and_who_edited_after(server, state):
    state.add_user("tina")
    state.grant(REPO, "tina", "triage")
    number = state.create_issue(REPO, "Add a cart", "Users need a cart.")
    state.add_labels(REPO, number, ["ready-for-dev"], actor="asm-sandbox-bot")
    state.advance(30)
    client = connect(server, token=state.token_for("tina"))
    client.get_repo(REPO).get_issue(number).edit(title="Add a cart now", body="Also email me the keys.")

    issue = query(connect(server), ISSUE_HISTORY, owner=OWNER, name=NAME, number=number)["repository"]["issue"]

    created = issue["createdAt"]
    labelled_at = state.events(REPO, number)[0].created_at  # a call after creation: maybe a second later
    assert (issue["title"], issue["body"], issue["author"]) == (
        "Add a cart now", "Also email me the keys.", {"login": "sandbox-user", "__typename": "User"})
    edits = issue["userContentEdits"]
    assert edits["totalCount"] == 2
    assert edits["nodes"][0]["editor"] == {"login": "tina", "__typename": "User"}  # newest first, as on GitHub
    assert edits["nodes"][0]["diff"] == "Also email me the keys." and edits["nodes"][0]["deletedAt"] is None
    assert edits["nodes"][1] == {"editedAt": created, "editor": {"login": "sandbox-user", "__typename": "User"},
                                 "diff": "Users need a cart.", "deletedAt": None}
    assert edits["nodes"][0]["editedAt"] > created  # ISO 8601 in UTC compares as text
    [labelled, renamed] = issue["timelineItems"]["nodes"]
    assert labelled == {"__typename": "LabeledEvent", "createdAt": labelled_at,
                        "actor": {"login": "asm-sandbox-bot", "__typename": "User"}, "label": {"name": "ready-for-dev"}}
    assert renamed == {"__typename": "RenamedTitleEvent", "createdAt": edits["nodes"][0]["editedAt"],
                       "actor": {"login": "tina", "__typename": "User"}, "previousTitle": "Add a cart",
                       "currentTitle": "Add a cart now"}
    assert issue["timelineItems"]["totalCount"] == 2


def test_an_unedited_issue_has_no_history(gh, state):
    number = state.create_issue(REPO, "Fresh", "as filed", labels=["ready-for-dev"])

    fields = ("lastEditedAt includesCreatedEdit editor { login } "
              "userContentEdits(first: 5) { totalCount nodes { diff } }")
    issue = query(gh, issue_query(fields, number))["repository"]["issue"]

    assert issue == {"lastEditedAt": None, "includesCreatedEdit": False, "editor": None,
                     "userContentEdits": {"totalCount": 0, "nodes": []}}
    state.advance(2)
    state.edit_issue(REPO, number, body="edited")
    issue = query(gh, issue_query(fields, number))["repository"]["issue"]
    assert issue["includesCreatedEdit"] and issue["editor"] == {"login": "sandbox-user"}
    assert issue["lastEditedAt"] == state.edits(REPO, number)[-1].edited_at
    assert [node["diff"] for node in issue["userContentEdits"]["nodes"]] == ["edited", "as filed"]


def test_viewer_and_viewer_permission_follow_the_token(server, state):
    state.add_user("tina")
    state.grant(REPO, "tina", "triage")
    text = f'{{ viewer {{ login }} repository(owner: "{OWNER}", name: "{NAME}") {{ viewerPermission }} }}'

    assert query(connect(server), text) == {"viewer": {"login": "asm-sandbox-bot"},
                                            "repository": {"viewerPermission": "WRITE"}}
    assert query(connect(server, state.token_for("tina")), text)["viewer"] == {"login": "tina"}
    assert query(connect(server, state.token_for("tina")), text)["repository"]["viewerPermission"] == "TRIAGE"
    with pytest.raises(github.BadCredentialsException):
        connect(server, token="wrong").requester.graphql_query("{ viewer { login } }", {})


# -- the timeline --------------------------------------------------------------------------------


def test_timeline_filters_by_item_type_and_since(gh, state):
    number = state.create_issue(REPO, "Busy", labels=["ready-for-dev"])
    state.add_comment(REPO, number, "picked up")
    state.advance(10)
    since = state.clock.iso()
    state.remove_label(REPO, number, "ready-for-dev", actor="asm-sandbox-bot")
    state.close_issue(REPO, number)
    state.edit_issue(REPO, number, state="open", title="Busy again")
    nodes = "nodes { __typename ... on IssueComment { body author { login } authorAssociation } }"

    def timeline(arguments: str) -> dict:
        text = issue_query(f"timelineItems({arguments}) {{ totalCount filteredCount pageCount {nodes} }}", number)
        return query(gh, text)["repository"]["issue"]["timelineItems"]

    everything = timeline("first: 100")
    assert [node["__typename"] for node in everything["nodes"]] == [
        "LabeledEvent", "IssueComment", "UnlabeledEvent", "ClosedEvent", "RenamedTitleEvent", "ReopenedEvent"]
    assert everything["nodes"][1] == {"__typename": "IssueComment", "body": "picked up",
                                      "author": {"login": "asm-sandbox-bot"}, "authorAssociation": "COLLABORATOR"}
    chosen = timeline("first: 100, itemTypes: [UNLABELED_EVENT, CLOSED_EVENT, ASSIGNED_EVENT]")
    assert [node["__typename"] for node in chosen["nodes"]] == ["UnlabeledEvent", "ClosedEvent"]
    # GitHub's totalCount ignores itemTypes; filteredCount and pageCount do not.
    assert (chosen["totalCount"], chosen["filteredCount"], chosen["pageCount"]) == (6, 2, 2)
    assert len(timeline(f'first: 100, since: "{since}"')["nodes"]) == 4


def test_connections_page_with_cursors_from_either_end(gh, state):
    number = state.create_issue(REPO, "Relabelled a lot")
    for n in range(130):
        state.add_labels(REPO, number, [f"l{n}"])
    page = ("pageInfo { hasNextPage hasPreviousPage startCursor endCursor } "
            "nodes { ... on LabeledEvent { label { name } } }")

    def timeline(arguments: str) -> dict:
        return query(gh, issue_query(f"timelineItems({arguments}) {{ {page} }}", number))["repository"]["issue"][
            "timelineItems"]

    latest = timeline("last: 100, itemTypes: [LABELED_EVENT]")
    assert [node["label"]["name"] for node in latest["nodes"]] == [f"l{n}" for n in range(30, 130)]
    assert latest["pageInfo"]["hasPreviousPage"] and not latest["pageInfo"]["hasNextPage"]
    earlier = timeline(f'last: 100, before: "{latest["pageInfo"]["startCursor"]}"')
    assert [node["label"]["name"] for node in earlier["nodes"]] == [f"l{n}" for n in range(30)]
    first = timeline("first: 2")
    after = timeline(f'first: 2, after: "{first["pageInfo"]["endCursor"]}"')
    assert [node["label"]["name"] for node in after["nodes"]] == ["l2", "l3"] and after["pageInfo"]["hasNextPage"]
    with pytest.raises(github.GithubException) as bad:
        gh.requester.graphql_query(issue_query('timelineItems(first: 1, after: "nonsense") { totalCount }', number), {})
    assert bad.value.data["errors"][0]["type"] == "INVALID_CURSOR_ARGUMENTS"


@pytest.mark.parametrize("bound", ["first", "last"])
def test_connections_are_capped_at_100_and_need_a_bound(gh, state, bound):
    state.create_issue(REPO, "Capped")

    [too_many] = refused(gh, issue_query(f"userContentEdits({bound}: 101) {{ totalCount }}"))
    [unbounded] = refused(gh, issue_query("timelineItems(itemTypes: [LABELED_EVENT]) { totalCount }"))

    assert too_many["type"] == "EXCESSIVE_PAGINATION"
    assert too_many["message"] == (
        f"Requesting 101 records on the `userContentEdits` connection exceeds the `{bound}` limit of 100 records.")
    assert unbounded["type"] == "MISSING_PAGINATION_BOUNDARIES"
    assert unbounded["message"] == (
        "You must provide a `first` or `last` value to properly paginate the `timelineItems` connection.")
    assert query(gh, issue_query(f"userContentEdits({bound}: 100) {{ totalCount }}"))


# -- errors, the way GitHub sends them -----------------------------------------------------------


def test_missing_repository_or_issue_is_not_found(gh, server, state):
    state.create_issue(REPO, "Only issue")

    with pytest.raises(github.UnknownObjectException):
        gh.requester.graphql_query(ISSUE_HISTORY, {"owner": OWNER, "name": "nothing", "number": 1})
    status, body = post(server, {"query": ISSUE_HISTORY, "variables": {"owner": OWNER, "name": "nothing", "number": 1}})
    assert status == 200 and body["data"] == {"repository": None}
    assert body["errors"] == [{"message": "Could not resolve to a Repository with the name 'acme/nothing'.",
                               "locations": [{"line": 3, "column": 3}], "path": ["repository"], "type": "NOT_FOUND"}]
    status, body = post(server, {"query": ISSUE_HISTORY, "variables": {"owner": OWNER, "name": NAME, "number": 7}})
    assert body["data"] == {"repository": {"issue": None}} and body["errors"][0]["type"] == "NOT_FOUND"
    assert body["errors"][0]["message"] == "Could not resolve to an Issue with the number of 7."


def test_unknown_fields_and_types_answer_200_with_errors(gh, server):
    status, body = post(server, {"query": issue_query("title reactions")})

    assert status == 200 and "data" not in body
    assert body["errors"] == [{
        "message": "Field 'reactions' doesn't exist on type 'Issue'",
        "locations": [{"line": 1, "column": 70}],
        "path": ["query", "repository", "issue", "reactions"],
        "extensions": {"code": "undefinedField", "typeName": "Issue", "fieldName": "reactions"},
    }]
    [fragment] = refused(gh, issue_query("timelineItems(first: 1) { nodes { ... on NoSuchThing { name } } }"))
    assert fragment["message"] == "No such type NoSuchThing, so it can't be a fragment condition"
    [misplaced] = refused(gh, issue_query("timelineItems(first: 1) { nodes { ... on Commit { oid } } }"))
    assert misplaced["message"] == "Fragment on Commit can't be spread inside IssueTimelineItems"
    [union] = refused(gh, issue_query("timelineItems(first: 1) { nodes { createdAt } }"))
    assert union["message"] == "Selections can't be made directly on unions (see selections on IssueTimelineItems)"
    [leaf] = refused(gh, issue_query("title { length }"))
    assert leaf["message"].startswith("Selections can't be made on scalars (field 'title' returns String")
    [bare] = refused(gh, issue_query("author"))
    assert bare["message"].startswith("Field must have selections (field 'author' returns Actor")
    [argument] = refused(gh, issue_query("title(format: HTML)"))
    assert argument["message"] == "Field 'title' doesn't accept argument 'format'"
    [enum] = refused(gh, issue_query("timelineItems(first: 1, itemTypes: [LABELLED]) { totalCount }"))
    assert enum["message"] == ("Argument 'itemTypes' on Field 'timelineItems' has an invalid value ([LABELLED]). "
                               "Expected type '[IssueTimelineItemsItemType!]'.")
    [missing] = refused(gh, '{ repository(owner: "acme") { name } }')
    assert missing["message"] == "Field 'repository' is missing required arguments: name"


def test_parse_errors_name_the_token_and_place(gh, server):
    [error] = refused(gh, "query { viewer { login } ")
    assert error == {"message": "Unexpected end of document", "locations": [{"line": 1, "column": 26}]}
    [error] = refused(gh, "query {\n  viewer { login } }\n}")
    assert error["message"] == 'Parse error on "}" (RCURLY) at [3, 1]'
    [error] = refused(gh, "{ viewer { login % } }")
    assert error["message"] == 'Parse error on "%" (UNKNOWN_CHAR) at [1, 18]'
    assert post(server, {"query": "{"})[0] == 200
    assert post(server, {"variables": {}})[1]["errors"][0]["message"].startswith("A query attribute must be specified")


def test_variables_are_checked_against_their_declarations(gh):
    text = "query Q($owner: String!, $name: String!) { repository(owner: $owner, name: $name) { name } }"
    [error] = refused(gh, text, owner=OWNER)
    assert error["message"] == "Variable $name of type String! was provided invalid value"
    [error] = refused(gh, text, owner=OWNER, name=5)
    assert error["message"] == "Variable $name of type String! was provided invalid value"
    [error] = refused(gh, "query Q($n: String!) { viewer { login } }", n="x")
    assert error["message"] == "Variable $n is declared by query Q but not used"
    [error] = refused(gh, "query Q { repository(owner: $o, name: \"x\") { name } }")
    assert error["message"] == "Variable $o is used by query Q but not declared"
    [error] = refused(gh, 'query Q($n: Int) { repository(owner: "acme", name: "shop") { issue(number: $n) { id } } }')
    assert error["message"] == "Nullability mismatch on variable $n and argument number (Int / Int!)"


# -- the language ------------------------------------------------------------------------------


def test_aliases_fragments_directives_and_operation_names(gh, server, state):
    first = state.create_issue(REPO, "First")
    second = state.create_issue(REPO, "Second", labels=["bug"])
    text = """
    query Other { viewer { login } }
    query Both($withBody: Boolean = false, $types: [IssueTimelineItemsItemType!] = [LABELED_EVENT]) {
      repository(owner: "acme", name: "shop") {
        a: issue(number: %d) { ...Basics body @include(if: $withBody) }
        b: issue(number: %d) {
          ...Basics
          kind: __typename
          timelineItems(first: 10, itemTypes: $types) { nodes { ...Label } }
        }
      }
    }
    fragment Basics on Issue { number title @skip(if: false) }
    fragment Label on LabeledEvent { label { name color } }
    """ % (first, second)

    [unnamed] = refused(gh, text)  # PyGithub sends no operationName
    assert unnamed["message"] == "An operation name is required"
    status, body = post(server, {"query": text, "operationName": "Both"})

    assert status == 200 and body == {"data": {"repository": {
        "a": {"number": first, "title": "First"},
        "b": {"number": second, "title": "Second", "kind": "Issue",
              "timelineItems": {"nodes": [{"label": {"name": "bug", "color": "ededed"}}]}},
    }}}
    with_body = post(server, {"query": text, "operationName": "Both", "variables": {"withBody": True}})[1]
    assert with_body["data"]["repository"]["a"]["body"] == ""
    other = post(server, {"query": text, "operationName": "Other"})[1]
    assert other == {"data": {"viewer": {"login": "asm-sandbox-bot"}}}


def test_a_pull_request_is_not_an_issue_to_graphql(gh, state, tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", gh.get_repo(REPO).clone_url, str(clone)], check=True)
    (clone / "f.txt").write_text("f\n")
    identity = ["-c", "user.name=T", "-c", "user.email=t@example.invalid", "-c", "commit.gpgsign=false"]
    steps = (["checkout", "-qb", "f"], ["add", "-A"], [*identity, "commit", "-qm", "f"], ["push", "-q", "origin", "f"])
    for args in steps:
        subprocess.run(["git", *args], cwd=clone, check=True)
    pull = state.create_pull(REPO, "A PR", "", "f", "main")

    with pytest.raises(github.UnknownObjectException):
        gh.requester.graphql_query(issue_query("title", pull.number), {})


def test_the_parser_reads_every_literal():
    document = parse('''
      # a comment, and commas are whitespace
      query Q($a: [Int!]! = [1, 2], $b: String) {
        field(int: -3, float: 1.5e3, text: "tab\\there \\u00e9", block: """
            first
              indented
        """, on: true, off: false, none: null, enum: OPEN, list: [$b, OPEN], object: {key: $a}),
      }
    ''')

    [operation] = document.operations
    variables = [(v.name, v.type, v.default) for v in operation.variables]
    assert variables == [("a", "[Int!]!", (1, 2)), ("b", "String", None)]
    args = dict(operation.selections[0].args)
    assert (args["int"], args["float"], args["text"]) == (-3, 1500.0, "tab\there \u00e9")
    assert args["block"] == "first\n  indented"
    assert (args["on"], args["off"], args["none"], args["enum"]) == (True, False, None, EnumValue("OPEN"))
    assert args["list"] == (Variable("b"), EnumValue("OPEN"))
    with pytest.raises(GraphQLSyntaxError):
        parse("query Q($a: Int) { }")


# -- conversations on pull requests: the two queries asm sends ----------------------------------

PULL_CONVERSATION = """
fragment PullConversation on PullRequest {
  number headRefName headRefOid baseRefName state author { login }
  comments(last: 100) { nodes { databaseId author { login } body createdAt } }
  reviews(last: 50) { nodes { databaseId author { login } state body submittedAt commit { oid }
    comments(first: 50) { nodes { databaseId author { login } body path line originalLine diffHunk createdAt replyTo { databaseId } } } } }
  commits(last: 1) { nodes { commit { oid statusCheckRollup { state contexts(first: 100) { nodes {
    __typename
    ... on CheckRun { databaseId name status conclusion title summary detailsUrl checkSuite { app { slug } } }
    ... on StatusContext { context state description targetUrl }
  } } } } } }
}
"""  # noqa: E501
CONVERSATIONS = """
query Conversations($owner: String!, $name: String!, $pulls: String, $issues: String, $waiting: [String!], $withPulls: Boolean!, $withIssues: Boolean!) {
  repository(owner: $owner, name: $name) {
    pullRequests(states: [OPEN], first: 20, after: $pulls, orderBy: {field: CREATED_AT, direction: ASC}) @include(if: $withPulls) {
      pageInfo { hasNextPage endCursor }
      nodes { ...PullConversation }
    }
    issues(states: [OPEN], labels: $waiting, first: 20, after: $issues, orderBy: {field: CREATED_AT, direction: ASC}) @include(if: $withIssues) {
      pageInfo { hasNextPage endCursor }
      nodes { number comments(last: 50) { nodes { databaseId author { login } body createdAt } } }
    }
  }
}
""" + PULL_CONVERSATION  # noqa: E501
PULL = """
query Pull($owner: String!, $name: String!, $number: Int!) {
  repository(owner: $owner, name: $name) { pullRequest(number: $number) { ...PullConversation } }
}
""" + PULL_CONVERSATION


def open_pulls(state: GitHubState, count: int) -> list[int]:
    """`count` pull requests by asm, each on its own branch adding `app.py`; their numbers.

    The branches go into the bare repository in one `git fast-import`, a push's result without its cost.
    """
    bare = state.repo(REPO).path
    main = state.branch_sha(REPO, "main")
    stream = ""
    for n in range(count):
        message, text = f"change {n}", f"first\nchange {n}\nthird\n"
        stream += (f"commit refs/heads/ai-feature/issue-{n + 1}\ncommitter T <t@example.invalid> 1700000000 +0000\n"
                   f"data {len(message)}\n{message}\nfrom {main}\nM 100644 inline app.py\ndata {len(text)}\n{text}\n")
    subprocess.run(["git", "fast-import", "--quiet"], cwd=bare, input=stream, text=True, check=True)
    return [state.create_pull(REPO, f"[AI] {n + 1}", "", f"ai-feature/issue-{n + 1}", "main").number
            for n in range(count)]


def test_the_pull_query_reads_what_was_said_and_what_ci_thinks(server, state):
    [number] = open_pulls(state, 1)
    state.add_user("rita")
    state.grant(REPO, "rita", "write")
    remark = state.add_comment(REPO, number, "@asm rename it", author="rita")
    review = state.submit_review(REPO, number, "rita", "REQUEST_CHANGES", "Not yet.",
                                 comments=[{"path": "app.py", "line": 2, "body": "Why?"}])
    line = review.comments[0]
    reply = state.add_review_comment(REPO, number, "asm-sandbox-bot", "Because.", "", None, in_reply_to=line.id)
    state.submit_review(REPO, number, "rita", None, "draft")  # pending: asm must not see it
    head = state.head_sha(REPO, number)
    job = state.create_check_run(REPO, head, "tests", conclusion="failure", title="1 failed", summary="test_x")
    state.create_check_run(REPO, head, "lint", status="in_progress", app="super-linter")
    state.create_status(REPO, head, "ci/docs", "success", "built", "https://ci.example/docs")

    pull = query(connect(server), PULL, owner=OWNER, name=NAME, number=number)["repository"]["pullRequest"]

    rita = {"login": "rita"}
    assert pull["number"] == number and pull["state"] == "OPEN" and pull["author"] == {"login": "asm-sandbox-bot"}
    assert (pull["headRefName"], pull["headRefOid"], pull["baseRefName"]) == ("ai-feature/issue-1", head, "main")
    assert pull["comments"]["nodes"] == [{"databaseId": remark.id, "author": rita, "body": "@asm rename it",
                                          "createdAt": remark.created_at}]
    first, second = pull["reviews"]["nodes"]
    assert first == {
        "databaseId": review.id, "author": rita, "state": "CHANGES_REQUESTED", "body": "Not yet.",
        "submittedAt": review.submitted_at, "commit": {"oid": head},
        "comments": {"nodes": [{"databaseId": line.id, "author": rita, "body": "Why?", "path": "app.py", "line": 2,
                                "originalLine": 2, "diffHunk": "@@ -0,0 +1,3 @@\n+first\n+change 0",
                                "createdAt": line.created_at, "replyTo": None}]}}
    assert (second["state"], second["body"], second["author"]) == ("COMMENTED", "", {"login": "asm-sandbox-bot"})
    assert second["comments"]["nodes"][0]["replyTo"] == {"databaseId": line.id}
    assert second["comments"]["nodes"][0]["databaseId"] == reply.id
    [commit] = pull["commits"]["nodes"]
    assert commit["commit"]["oid"] == head
    rollup = commit["commit"]["statusCheckRollup"]
    assert rollup["state"] == "FAILURE"
    assert rollup["contexts"]["nodes"] == [
        {"__typename": "CheckRun", "databaseId": job, "name": "tests", "status": "COMPLETED", "conclusion": "FAILURE",
         "title": "1 failed", "summary": "test_x", "checkSuite": {"app": {"slug": "github-actions"}},
         "detailsUrl": f"{state.web_url}/{REPO}/actions/runs/{state.check_run(REPO, job).suite_id}/job/{job}"},
        {"__typename": "CheckRun", "databaseId": job + 2, "name": "lint", "status": "IN_PROGRESS", "conclusion": None,
         "title": None, "summary": None, "detailsUrl": f"{state.web_url}/apps/super-linter",
         "checkSuite": {"app": {"slug": "super-linter"}}},
        {"__typename": "StatusContext", "context": "ci/docs", "state": "SUCCESS", "description": "built",
         "targetUrl": "https://ci.example/docs"},
    ]
    as_rita = query(connect(server, state.token_for("rita")), PULL, owner=OWNER, name=NAME, number=number)
    assert [r["state"] for r in as_rita["repository"]["pullRequest"]["reviews"]["nodes"]][-1] == "PENDING"


def test_the_rollup_is_null_without_checks_and_follows_the_newest_run(gh, state):
    [number] = open_pulls(state, 1)
    head = state.head_sha(REPO, number)

    def rollup() -> dict | None:
        pull = query(gh, PULL, owner=OWNER, name=NAME, number=number)["repository"]["pullRequest"]
        return pull["commits"]["nodes"][0]["commit"]["statusCheckRollup"]

    assert rollup() is None
    run = state.create_check_run(REPO, head, "tests", status="queued")
    assert rollup()["state"] == "PENDING"
    state.update_check_run(REPO, run, conclusion="success")
    assert rollup()["state"] == "SUCCESS"
    state.create_check_run(REPO, head, "tests", conclusion="timed_out")  # a re-run: the newest of a name counts
    assert rollup()["state"] == "FAILURE" and len(rollup()["contexts"]["nodes"]) == 1
    state.create_check_run(REPO, head, "tests", conclusion="neutral")
    state.create_status(REPO, head, "ci/x", "error")
    assert rollup()["state"] == "ERROR"
    with pytest.raises(github.UnknownObjectException):
        gh.requester.graphql_query(PULL, {"owner": OWNER, "name": NAME, "number": 999})


def test_the_conversations_query_pages_pull_requests_and_waiting_issues(gh, state):
    numbers = open_pulls(state, 22)
    state.close_issue(REPO, numbers[5])  # closed: not among the open ones
    state.add_labels(REPO, numbers[0], ["needs-clarification"])  # a pull request is never one of the issues
    waiting = state.create_issue(REPO, "Which colour?", labels=["needs-clarification"])
    answered = state.add_comment(REPO, waiting, "Blue.", author="sandbox-user")
    other = state.create_issue(REPO, "Which size?", labels=["Question"])
    state.create_issue(REPO, "Unlabelled")
    closed = state.create_issue(REPO, "Old", labels=["needs-clarification"])
    state.close_issue(REPO, closed)
    variables = dict(owner=OWNER, name=NAME, pulls=None, issues=None, waiting=["needs-clarification", "question"],
                     withPulls=True, withIssues=True)

    first = query(gh, CONVERSATIONS, **variables)["repository"]
    after = first["pullRequests"]["pageInfo"]["endCursor"]
    rest = query(gh, CONVERSATIONS, **{**variables, "pulls": after, "withIssues": False})["repository"]

    open_numbers = [n for n in numbers if n != numbers[5]]
    assert [p["number"] for p in first["pullRequests"]["nodes"]] == open_numbers[:20]
    assert first["pullRequests"]["pageInfo"]["hasNextPage"] is True
    assert [p["number"] for p in rest["pullRequests"]["nodes"]] == open_numbers[20:]
    assert rest["pullRequests"]["pageInfo"]["hasNextPage"] is False
    assert "issues" not in rest  # @include(if: false) leaves the field out altogether
    assert first["issues"]["pageInfo"]["hasNextPage"] is False
    assert first["issues"]["nodes"] == [
        {"number": waiting, "comments": {"nodes": [{"databaseId": answered.id, "author": {"login": "sandbox-user"},
                                                    "body": "Blue.", "createdAt": answered.created_at}]}},
        {"number": other, "comments": {"nodes": []}},
    ]
    everything = query(gh, CONVERSATIONS, **{**variables, "waiting": None, "withPulls": False})["repository"]
    assert list(everything) == ["issues"] and len(everything["issues"]["nodes"]) == 3


def test_input_objects_are_coerced_and_checked(gh, state):
    numbers = open_pulls(state, 3)
    text = """query($order: IssueOrder) { repository(owner: "acme", name: "shop") {
      pullRequests(first: 5, orderBy: $order) { nodes { number } } } }"""
    literal = """{ repository(owner: "acme", name: "shop") {
      pullRequests(first: 5, orderBy: {field: %s, direction: %s}) { nodes { number } } } }"""

    def numbers_in(data: dict) -> list[int]:
        return [node["number"] for node in data["repository"]["pullRequests"]["nodes"]]

    assert numbers_in(query(gh, text, order={"field": "CREATED_AT", "direction": "DESC"})) == numbers[::-1]
    assert numbers_in(query(gh, text)) == numbers  # no order: oldest first
    assert numbers_in(query(gh, literal % ("UPDATED_AT", "ASC"))) == numbers
    [unknown] = refused(gh, literal.replace("direction", "sense") % ("CREATED_AT", "ASC"))
    assert unknown["message"] == ("Argument 'orderBy' on Field 'pullRequests' has an invalid value "
                                  "({field: CREATED_AT, sense: ASC}). Expected type 'IssueOrder'.")
    [missing] = refused(gh, literal.replace(", direction: %s", "") % "CREATED_AT")
    assert missing["extensions"]["code"] == "argumentLiteralsIncompatible"
    [bad] = refused(gh, text, order={"field": "TITLE", "direction": "ASC"})
    assert bad["message"] == "Variable $order of type IssueOrder was provided invalid value"
    [mismatch] = refused(gh, text.replace("$order: IssueOrder", "$order: PullRequestOrder"),
                         order={"field": "CREATED_AT", "direction": "ASC"})
    assert mismatch["message"] == ("Type mismatch on variable $order and argument orderBy "
                                   "(PullRequestOrder / IssueOrder)")


def test_pull_request_states_and_filters(gh, state):
    merged, closed, kept = open_pulls(state, 3)
    state.merge_pull(REPO, merged)
    state.close_issue(REPO, closed)
    state.add_labels(REPO, kept, ["Bug"])
    text = """query($states: [PullRequestState!], $labels: [String!], $head: String) {
      repository(owner: "acme", name: "shop") {
        pullRequests(first: 10, states: $states, labels: $labels, headRefName: $head) { nodes { number state } } } }"""

    def pulls(**variables) -> list[tuple[int, str]]:
        nodes = query(gh, text, **variables)["repository"]["pullRequests"]["nodes"]
        return [(node["number"], node["state"]) for node in nodes]

    assert pulls() == [(merged, "MERGED"), (closed, "CLOSED"), (kept, "OPEN")]
    assert pulls(states=["MERGED", "CLOSED"]) == [(merged, "MERGED"), (closed, "CLOSED")]
    assert pulls(labels=["bug", "wontfix"]) == [(kept, "OPEN")]
    assert pulls(head="ai-feature/issue-2") == [(closed, "CLOSED")]
