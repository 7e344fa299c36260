/*
 * The chat inside the widget's iframe. It calls this server's /api/ask and /api/feedback (same origin)
 * and builds every node with textContent: nothing from the user or an answer is ever parsed as HTML.
 */
(function () {
  "use strict";

  var panel = document.getElementById("panel");
  var config = JSON.parse(panel.getAttribute("data-config") || "{}");
  var MAX_TURNS = config.maxTurns || 20;
  var log = document.getElementById("log");
  var form = document.getElementById("ask-form");
  var textarea = document.getElementById("question");
  var sendButton = document.getElementById("send");
  var starters = document.getElementById("starters");
  var pageDisclaimer = document.getElementById("page-disclaimer");
  var history = [];
  var busy = false;

  // The site's colour fills the header and the Ask button; its text is white or near-black, whichever reads
  // better (WCAG contrast), and where the colour itself would be text on white it is used only if it reads there.
  function luminance(color) {
    var probe = document.createElement("span");
    probe.style.color = color;
    document.body.appendChild(probe);
    var rgb = (getComputedStyle(probe).color.match(/\d+(\.\d+)?/g) || ["0", "0", "0"]).slice(0, 3);
    probe.remove();
    var channels = rgb.map(function (value) {
      var c = Number(value) / 255;
      return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * channels[0] + 0.7152 * channels[1] + 0.0722 * channels[2];
  }
  function contrast(a, b) {
    return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  }
  var accent = config.color || "#2f4eb5";
  var accentLight = luminance(accent);
  var root = document.documentElement.style;
  root.setProperty("--accent", accent);
  root.setProperty("--on-accent", contrast(accentLight, 1) >= contrast(accentLight, luminance("#1d2230")) ? "#fff" : "#1d2230");
  root.setProperty("--accent-text", contrast(accentLight, 1) >= 4.5 ? accent : "#1d2230");

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    if (text !== undefined && text !== null) {
      node.textContent = text;
    }
    return node;
  }

  function safeUrl(url) {
    try {
      var parsed = new URL(url);
      return parsed.protocol === "https:" || parsed.protocol === "http:" ? parsed.toString() : null;
    } catch (error) {
      return null;
    }
  }

  // Inline text: [n] becomes a link to its source card, **x** becomes <strong>; everything else is text.
  function appendInline(parent, text, cardIds) {
    var pattern = /\[(\d+)\]|\*\*([^*\n]+)\*\*|\[([^\]\n]*)\]\([^)\s]*\)/g;
    var last = 0;
    var match;
    while ((match = pattern.exec(text)) !== null) {
      parent.appendChild(document.createTextNode(text.slice(last, match.index)));
      if (match[1] !== undefined && cardIds[match[1]]) {
        var link = el("a", "cite", "[" + match[1] + "]");
        link.href = "#" + cardIds[match[1]];
        link.setAttribute("aria-label", "Go to source [" + match[1] + "]");
        link.addEventListener("click", openCard(cardIds[match[1]]));
        parent.appendChild(link);
      } else if (match[2] !== undefined) {
        parent.appendChild(el("strong", null, match[2]));
      } else if (match[3] !== undefined) {
        parent.appendChild(document.createTextNode(match[3]));
      } else {
        parent.appendChild(document.createTextNode(match[0]));
      }
      last = pattern.lastIndex;
    }
    parent.appendChild(document.createTextNode(text.slice(last)));
  }

  function openCard(id) {
    return function (event) {
      event.preventDefault();
      var card = document.getElementById(id);
      if (card) {
        card.open = true;
        card.querySelector("summary").focus();
        card.scrollIntoView({ block: "nearest" });
      }
    };
  }

  function appendMarkdown(parent, text, cardIds) {
    text.split(/\n\s*\n/).forEach(function (block) {
      var lines = block.split("\n").filter(function (line) {
        return line.trim() !== "";
      });
      if (!lines.length) {
        return;
      }
      var isList = lines.every(function (line) {
        return /^\s*[-*]\s+/.test(line);
      });
      if (isList) {
        var list = el("ul");
        lines.forEach(function (line) {
          var item = el("li");
          appendInline(item, line.replace(/^\s*[-*]\s+/, ""), cardIds);
          list.appendChild(item);
        });
        parent.appendChild(list);
      } else {
        var paragraph = el("p");
        appendInline(paragraph, lines.join(" ").replace(/^#+\s*/, ""), cardIds);
        parent.appendChild(paragraph);
      }
    });
  }

  function disclaimerNode(text) {
    var node = el("p", "disclaimer");
    node.appendChild(el("strong", null, "Legal disclaimer: "));
    node.appendChild(document.createTextNode(text || pageDisclaimer.textContent.replace(/^Legal disclaimer:\s*/, "")));
    return node;
  }

  function feedbackNode(answer, question) {
    var box = el("div", "feedback");
    var label = el("span", null, "Was this helpful?");
    var up = el("button", "vote", "\ud83d\udc4d");
    var down = el("button", "vote", "\ud83d\udc4e");
    var commentForm = el("form", "comment");
    var commentInput = el("input");
    var commentSend = el("button", null, "Save");
    var status = el("span", "status");
    var chosen = null;
    up.type = down.type = "button";
    up.setAttribute("aria-label", "Helpful");
    down.setAttribute("aria-label", "Not helpful");
    commentInput.type = "text";
    commentInput.maxLength = config.maxComment || 2000;
    commentInput.placeholder = "Add a comment (optional)";
    commentInput.setAttribute("aria-label", "Comment on this answer");
    commentSend.type = "submit";
    commentForm.hidden = true;
    commentForm.appendChild(commentInput);
    commentForm.appendChild(commentSend);
    status.setAttribute("role", "status");

    function send(vote, comment) {
      var body = { answer_id: answer.answer_id, vote: vote, question: question, answer: answer.answer };
      if (comment) {
        body.comment = comment;
      }
      return fetch("api/feedback", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      }).then(function (response) {
        return response.json().then(function (data) {
          if (!response.ok) {
            throw new Error(data.message || "Feedback could not be saved.");
          }
          return data;
        });
      });
    }

    function onVote(vote, button) {
      return function () {
        chosen = vote;
        up.setAttribute("aria-pressed", String(button === up));
        down.setAttribute("aria-pressed", String(button === down));
        send(vote).then(
          function () {
            status.textContent = "Thanks, saved.";
            commentForm.hidden = false;
          },
          function (error) {
            status.textContent = error.message;
          }
        );
      };
    }
    up.addEventListener("click", onVote("up", up));
    down.addEventListener("click", onVote("down", down));
    commentForm.addEventListener("submit", function (event) {
      event.preventDefault();
      if (!chosen || !commentInput.value.trim()) {
        return;
      }
      send(chosen, commentInput.value.trim()).then(
        function () {
          status.textContent = "Comment saved. Thank you!";
          commentForm.hidden = true;
        },
        function (error) {
          status.textContent = error.message;
        }
      );
    });
    box.appendChild(label);
    box.appendChild(up);
    box.appendChild(down);
    box.appendChild(status);
    box.appendChild(commentForm);
    return box;
  }

  // The reply's blocks and their wording come from the server (assistant/presentation.py), in order,
  // the disclaimer last; this only gives each kind of block its markup.
  function renderAnswer(answer, question) {
    var reply = el("article", "reply");
    reply.setAttribute("aria-label", "Answer");
    var cardIds = {};
    answer.citations.forEach(function (citation) {
      cardIds[citation.n] = "src-" + answer.answer_id + "-" + citation.n;
    });
    var sources = null;
    (answer.blocks || []).forEach(function (block) {
      if (block.kind !== "source") {
        sources = null;
      }
      if (block.kind === "answer") {
        var body = el("div", "answer");
        appendMarkdown(body, block.text, cardIds);
        reply.appendChild(body);
      } else if (block.kind === "closest") {
        reply.appendChild(el("p", "closest", block.title + ": " + block.text));
      } else if (block.kind === "source") {
        if (!sources) {
          sources = el("div", "sources");
          sources.appendChild(el("h2", null, "Sources"));
          reply.appendChild(sources);
        }
        var card = el("details", "source-card");
        card.id = cardIds[block.n];
        card.appendChild(el("summary", null, block.title));
        card.appendChild(el("blockquote", null, block.text));
        if (block.source) {
          card.appendChild(el("p", "source-full", block.source));
        }
        var url = block.url ? safeUrl(block.url) : null;
        if (url && block.link) {
          var link = el("a", null, block.link);
          link.href = url;
          link.target = "_blank";
          link.rel = "noopener noreferrer";
          card.appendChild(link);
        }
        sources.appendChild(card);
      } else if (block.kind === "note") {
        reply.appendChild(el("p", "guard-note", block.text));
      } else if (block.kind === "notice") {
        var aside = el("aside", block.compact ? "notice compact" : "notice");
        aside.setAttribute("role", "note");
        if (block.compact) {
          aside.appendChild(el("p", null, block.text));
        } else {
          aside.appendChild(el("strong", null, block.title));
          aside.appendChild(el("p", null, block.text));
        }
        reply.appendChild(aside);
      } else if (block.kind === "disclaimer") {
        reply.appendChild(disclaimerNode(block.text));
      }
    });
    if (!(answer.blocks || []).some(function (block) { return block.kind === "disclaimer"; })) {
      reply.appendChild(disclaimerNode(answer.disclaimer));
    }
    reply.appendChild(feedbackNode(answer, question));
    if (answer.answer_id) {
      var brief = el("a", "brief", "Prepare a brief for a lawyer");
      brief.href = "api/brief/" + encodeURIComponent(answer.answer_id) + "?format=html";
      brief.target = "_blank";
      brief.rel = "noopener";
      reply.appendChild(brief);
    }
    return reply;
  }

  function renderError(message, disclaimer) {
    var reply = el("article", "reply error");
    reply.setAttribute("aria-label", "Error");
    reply.appendChild(el("p", "error-message", message));
    reply.appendChild(disclaimerNode(disclaimer));
    return reply;
  }

  function ask(question) {
    if (busy || !question.trim()) {
      return;
    }
    busy = true;
    sendButton.disabled = true;
    starters.hidden = true;
    log.appendChild(el("div", "user-message", question));
    var typing = el("p", "typing", "Looking through the article and its sources\u2026");
    log.appendChild(typing);
    typing.scrollIntoView({ block: "end" });
    fetch("api/ask", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ question: question, history: history.slice(-2 * MAX_TURNS) }),
    })
      .then(function (response) {
        return response.json().then(
          function (data) {
            return { ok: response.ok, data: data };
          },
          function () {
            return { ok: false, data: { message: "The server answered " + response.status + "; please try again." } };
          }
        );
      })
      .then(function (result) {
        typing.remove();
        if (result.ok) {
          history.push(
            { role: "user", content: question },
            {
              role: "assistant",
              content: result.data.answer,
              answer_id: result.data.answer_id,
              citations: result.data.citations
            }
          );
          log.appendChild(renderAnswer(result.data, question));
        } else {
          log.appendChild(renderError(result.data.message, result.data.disclaimer));
        }
      })
      .catch(function () {
        typing.remove();
        log.appendChild(renderError("The assistant could not be reached; please try again.", null));
      })
      .then(function () {
        busy = false;
        sendButton.disabled = false;
        log.lastChild.scrollIntoView({ block: "start" });
        textarea.focus();
      });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var question = textarea.value;
    if (question.trim()) {
      textarea.value = "";
      ask(question);
    }
  });
  textarea.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  starters.addEventListener("click", function (event) {
    var button = event.target.closest("button.starter");
    if (button) {
      ask(button.textContent);
    }
  });
  document.getElementById("new-chat").addEventListener("click", function () {
    history = [];
    log.replaceChildren();
    starters.hidden = false;
    textarea.focus();
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && window.parent !== window) {
      window.parent.postMessage("stem-help:close", "*");
    }
  });
  // Inside the host page's frame, a labelled Close button (on a phone the panel covers the whole screen).
  var closeButton = document.getElementById("close");
  if (window.parent !== window) {
    closeButton.hidden = false;
    closeButton.addEventListener("click", function () {
      window.parent.postMessage("stem-help:close", "*");
    });
  }
})();
