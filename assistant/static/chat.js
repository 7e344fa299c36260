/*
 * The chat page's own behaviour on top of Gradio's chatbot (loaded from the page head):
 *  - a new reply scrolls so that the answer's first line is at the top of the conversation (not its end);
 *  - [n] markers in an answer become buttons that open, show and focus source card n of the same reply;
 *  - a source card's toggle is one control named by its title, with aria-expanded (Gradio nests an unnamed
 *    icon button inside it, which is made inert);
 *  - the starter questions' list holds only list items;
 *  - on a narrow screen the title and jurisdiction note (a <details>) start folded into one line.
 * Nothing here changes what a reply says: it only adds behaviour and accessibility attributes to Gradio's markup.
 */
(function () {
  "use strict";

  var MARKER = /\[(\d+)\]/g;
  var rowsSeen = 0;

  function scroller(node) {
    for (var el = node.parentElement; el; el = el.parentElement) {
      var overflow = window.getComputedStyle(el).overflowY;
      if ((overflow === "auto" || overflow === "scroll") && el.scrollHeight > el.clientHeight) {
        return el;
      }
    }
    return null;
  }

  function showAtTop(node) {
    var box = scroller(node);
    if (box) {
      box.scrollTop += node.getBoundingClientRect().top - box.getBoundingClientRect().top - 8;
    }
    // On a short screen (or zoomed in) the page itself may have scrolled past the conversation's top.
    var top = node.getBoundingClientRect().top;
    if (top < 0) {
      window.scrollBy(0, top - 8);
    }
  }

  function cardToggles(row) {
    return Array.prototype.slice.call(row.querySelectorAll('.thought-group > [role="button"]'));
  }

  function isOpen(toggle) {
    return toggle.classList.contains("expanded");
  }

  function fixToggles(chat) {
    chat.querySelectorAll('.thought-group > [role="button"]').forEach(function (toggle) {
      var arrow = toggle.querySelector(".arrow");
      if (arrow && !arrow.inert) {
        // The arrow is drawn as an unnamed button inside the toggle: made inert (no focus, not in the
        // accessibility tree, clicks fall through to the toggle), so the toggle is the one control,
        // named by the card's title.
        arrow.inert = true;
      }
      var expanded = String(isOpen(toggle));
      if (toggle.getAttribute("aria-expanded") !== expanded) {
        toggle.setAttribute("aria-expanded", expanded);
      }
    });
  }

  function fixExamples(chat) {
    chat.querySelectorAll(".examples").forEach(function (list) {
      if (list.getAttribute("role") === "list") {
        Array.prototype.forEach.call(list.children, function (child) {
          if (!child.getAttribute("role")) {
            var item = document.createElement("div");
            item.setAttribute("role", "listitem");
            list.replaceChild(item, child);
            item.appendChild(child);
          }
        });
      }
    });
  }

  function linkMarkers(chat) {
    chat.querySelectorAll(".bot-row .message:not(.thought) .message-content .md").forEach(function (answer) {
      var walker = document.createTreeWalker(answer, NodeFilter.SHOW_TEXT);
      var texts = [];
      while (walker.nextNode()) {
        if (MARKER.test(walker.currentNode.nodeValue) && !walker.currentNode.parentElement.closest(".cite")) {
          texts.push(walker.currentNode);
        }
        MARKER.lastIndex = 0;
      }
      texts.forEach(function (text) {
        var value = text.nodeValue;
        var fragment = document.createDocumentFragment();
        var last = 0;
        var match;
        MARKER.lastIndex = 0;
        while ((match = MARKER.exec(value)) !== null) {
          fragment.appendChild(document.createTextNode(value.slice(last, match.index)));
          var cite = document.createElement("button");
          cite.type = "button";
          cite.className = "cite";
          cite.textContent = match[0];
          cite.setAttribute("data-n", match[1]);
          cite.setAttribute("aria-label", "Go to source " + match[0]);
          fragment.appendChild(cite);
          last = MARKER.lastIndex;
        }
        fragment.appendChild(document.createTextNode(value.slice(last)));
        text.parentNode.replaceChild(fragment, text);
      });
    });
  }

  function openCard(cite) {
    var row = cite.closest(".message-row");
    var n = cite.getAttribute("data-n");
    var toggle = row && cardToggles(row).filter(function (candidate) {
      return candidate.textContent.trim().indexOf("[" + n + "]") === 0;
    })[0];
    if (!toggle) {
      return;
    }
    if (!isOpen(toggle)) {
      toggle.click();
    }
    toggle.focus({ preventScroll: true });
    window.requestAnimationFrame(function () {
      showAtTop(toggle);
    });
  }

  // A new reply is pinned with its first line at the top while it streams in and its cards are added, until it
  // is complete (its disclaimer is there) or the person scrolls themselves.
  var pinned = null;
  var releasing = 0;

  function scrollNewReply(chat) {
    var rows = chat.querySelectorAll(".message-row");
    if (rows.length > rowsSeen && rows[rows.length - 1].classList.contains("bot-row")) {
      unpin();
      pinned = rows.length - 1;
    }
    rowsSeen = rows.length;
    if (pinned === null || !rows[pinned]) {
      pinned = null;
      return;
    }
    showAtTop(rows[pinned]);
    if (rows[pinned].querySelector("small strong") && !releasing) {
      // Complete: the cards and notices below may still be laid out (Gradio renders Markdown asynchronously),
      // which is what lets the box scroll that far; keep the reply in place a moment longer.
      releasing = window.setTimeout(function () {
        releasing = 0;
        pinned = null;
      }, 1500);
    }
  }

  function unpin() {
    pinned = null;
    window.clearTimeout(releasing);
    releasing = 0;
  }

  function watch(chat) {
    var pending = false;
    new MutationObserver(function () {
      if (pending) {
        return;
      }
      pending = true;
      window.requestAnimationFrame(function () {
        pending = false;
        fixExamples(chat);
        fixToggles(chat);
        linkMarkers(chat);
        scrollNewReply(chat);
      });
    }).observe(chat, { subtree: true, childList: true, characterData: true, attributes: true,
      attributeFilter: ["style"] });
    ["wheel", "touchmove", "keydown"].forEach(function (name) {
      chat.addEventListener(name, unpin, { passive: true });
    });
    chat.addEventListener("click", function (event) {
      var cite = event.target.closest && event.target.closest("button.cite");
      if (cite) {
        event.preventDefault();
        event.stopPropagation();
        openCard(cite);
      }
    }, true);
    fixExamples(chat);
    fixToggles(chat);
  }

  var NARROW = "(max-width: 639.98px)";

  function foldHeader(tries) {
    var about = document.getElementById("about");
    if (about) {
      if (window.matchMedia(NARROW).matches) {
        about.open = false;
      }
    } else if (tries > 0) {
      window.setTimeout(function () { foldHeader(tries - 1); }, 100);
    }
  }

  function start() {
    var chat = document.getElementById("chat");
    if (chat) {
      foldHeader(50);
      watch(chat);
      return;
    }
    window.setTimeout(start, 100);
  }
  start();
})();
